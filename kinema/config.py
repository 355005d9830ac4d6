"""Recipes: YAML files plus `key=value` overrides, checked against typed dataclasses."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from kinema.data.shapes import ShapesConfig
from kinema.errors import ConfigError
from kinema.io.atomic import atomic_write_text

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T")


@dataclass
class DataConfig:
    """Where clips come from and the shape they are cut to."""

    source: str = "shapes"  # "shapes" renders the shapes world on the fly; otherwise a manifest.jsonl path
    width: int = 64
    height: int = 64
    frames: int = 17
    fps: float = 8.0
    num_workers: int = 2
    # The shapes world's content options; its width/height/frames/fps are taken from this section.
    shapes: ShapesConfig = field(default_factory=ShapesConfig)

    def __post_init__(self) -> None:
        for name in ("width", "height", "frames", "fps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class TrainConfig:
    """How a run optimises; `kinema train` reads these."""

    out_dir: str = "runs/default"
    seed: int = 0
    batch_size: int = 8
    lr: float = 3e-4
    steps: int = 10_000

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be positive, got {self.lr}")


@dataclass
class Recipe:
    """A whole run: data and training."""

    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def find_recipe(name: str | os.PathLike) -> Path:
    """A recipe file by path, or by bare name from the repo's configs/ folder (`t2v` -> configs/t2v.yaml)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = CONFIGS_DIR / f"{path.name}.yaml"
    if path.suffix == "" and path.parent == Path(".") and bundled.is_file():
        return bundled
    known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))) or "none"
    raise ConfigError(f"recipe '{name}' not found (bundled recipes: {known})")


def load_config(schema: type[T], recipe: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> T:
    """Merge the schema's defaults, a YAML recipe and dotlist overrides into a typed `schema` instance."""
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.lr=3e-4")
    layers = [OmegaConf.structured(schema)]
    if recipe is not None:
        layers.append(_read_yaml(find_recipe(recipe)))
    layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(*layers)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, e.full_key)) from None
    except ValidationError as e:
        raise ConfigError(_bad_value_message(schema, e)) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"config: {e}".splitlines()[0]) from None
    except ValueError as e:
        raise ConfigError(str(e)) from None


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a resolved config as YAML, atomically, so a run's outputs say how they were made."""
    return atomic_write_text(path, to_yaml(config))


def to_yaml(config: Any) -> str:
    """The config as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _read_yaml(path: Path):
    """Load a YAML file, turning syntax errors into a ConfigError that names the file."""
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # yaml's scanner and parser errors share no useful base class
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got a list")
    return loaded


def _unknown_key_message(schema: type, full_key: str) -> str:
    """Name the unknown key and list the valid keys beside it."""
    parent, _, _key = str(full_key).rpartition(".")
    node = _schema_at(schema, parent)
    where = f"'{parent}'" if parent else "the top level"
    valid = ", ".join(f.name for f in dataclasses.fields(node)) if node else "none"
    return f"unknown config key '{full_key}'; valid keys in {where}: {valid}"


def _bad_value_message(schema: type, error: ValidationError) -> str:
    """Name the key, the bad value and the expected type."""
    full_key = str(error.full_key)
    parent, _, key = full_key.rpartition(".")
    node = _schema_at(schema, parent)
    hints = typing.get_type_hints(node) if node else {}
    expected = _type_name(hints[key]) if key in hints else "another type"
    value = getattr(error, "value", None)
    shown = f"'{value}'" if value is not None else "the value"
    return f"bad value for config key '{full_key}': {shown} is not a valid {expected}"


def _schema_at(schema: type, dotted: str) -> type | None:
    """The dataclass type found by following a dotted path of fields from `schema`."""
    node: Any = schema
    for part in filter(None, dotted.split(".")):
        hints = typing.get_type_hints(node) if dataclasses.is_dataclass(node) else {}
        if part not in hints:
            return None
        node = hints[part]
    return node if dataclasses.is_dataclass(node) else None


def _type_name(tp: Any) -> str:
    """A readable name for a type annotation."""
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
