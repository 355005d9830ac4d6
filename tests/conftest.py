"""Shared fixtures."""

import importlib
import os
import shutil
from types import ModuleType

import pytest
import torch

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google, which a closed network refuses.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items):
    """Skip tests marked cuda where torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def require_extra(module: str, extra: str) -> ModuleType:
    """Import a module of an optional extra, or skip; KINEMA_REQUIRE_EXTRAS=1 (CI) makes a missing one fail."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (pip install 'kinema[{extra}]')"
        if os.environ.get("KINEMA_REQUIRE_EXTRAS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def browser():
    """A real headless Chromium driven by Playwright.

    Skips where Chromium or Playwright is missing, unless KINEMA_REQUIRE_BROWSER=1 (CI sets it),
    in which case a missing browser fails the test instead of hiding it.
    """
    missing = None
    if shutil.which(CHROMIUM) is None:
        missing = f"no Chromium at {CHROMIUM} (apt install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright for Python is not installed"
    if missing:
        if os.environ.get("KINEMA_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
