"""Playing a world model: a real first frame, then one generated frame per key press.

A world pipeline is a folder holding `vae/`, `dit/`, `kinema.json` (kind "world": size, fps,
action names and the stream's settings) and `start_frames.npz`, real first frames to start
from. The DiT runs block-causally through `LatentStream` over a KV cache, and the VAE decodes
each new latent chunk with its carried causal state, so a step costs the same at frame 10 and
at frame 10,000.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kinema.data.dataset import resize_crop, to_frames, to_tensor
from kinema.data.manifest import clip_path, read_manifest
from kinema.errors import KinemaError
from kinema.generate.stream import LatentStream, StreamSettings
from kinema.io import atomic_path, atomic_write_text, check_frames
from kinema.io.video import read_video
from kinema.models.dit import VideoDiT
from kinema.models.vae import load_vae

INFO_NAME = "kinema.json"
STARTS_NAME = "start_frames.npz"
TEXT_DIM = 8  # the world DiT's text input width: it takes one zero token


@dataclass
class WorldInfo:
    """What a world model was trained on and how its stream plays."""

    width: int = 64
    height: int = 64
    fps: float = 15.0
    action_names: list[str] = field(default_factory=list)
    chunk_frames: int = 1
    steps: int = 4
    shift: float = 1.0
    context_sigma: float = 0.05
    window_frames: int | None = 15
    sink_frames: int = 1
    kind: str = "world"

    def stream_settings(self, steps: int | None = None) -> StreamSettings:
        """The stream's settings, optionally with another number of steps per chunk."""
        return StreamSettings(
            chunk_frames=self.chunk_frames,
            steps=self.steps if steps is None else steps,
            shift=self.shift,
            context_sigma=self.context_sigma,
            sink_frames=self.sink_frames,
            window_frames=self.window_frames,
        )


class WorldModel:
    """A VAE and a block-causal, action-conditioned DiT that turn key presses into frames."""

    def __init__(
        self, vae: torch.nn.Module, dit: VideoDiT, info: WorldInfo, steps: int | None = None
    ) -> None:
        self.vae, self.dit, self.info = vae.eval(), dit.eval(), info
        self.settings = info.stream_settings(steps)
        self.stream: LatentStream | None = None

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu", steps: int | None = None) -> WorldModel:
        """Load a world pipeline folder in fp32 on `device`."""
        folder = Path(folder)
        info_path = folder / INFO_NAME
        if not info_path.is_file():
            raise KinemaError(f"{folder}: not a world model folder (no {INFO_NAME} beside vae/ and dit/)")
        data = json.loads(info_path.read_text(encoding="utf-8"))
        if data.get("kind") != "world":
            raise KinemaError(f"{folder}: a text-to-video pipeline, not a world model (kinema.json kind)")
        vae = load_vae(folder / "vae", device=device).float()
        dit = VideoDiT.from_pretrained(folder / "dit", device=device, dtype=torch.float32)
        return cls(vae, dit, WorldInfo(**data), steps=steps)

    def save_pretrained(
        self, folder: str | Path, start_frames: np.ndarray, dtype: torch.dtype = torch.float16
    ) -> Path:
        """Write vae/, dit/, kinema.json and the start frames; weights as `dtype` (fp16 for shipping)."""
        folder = Path(folder)
        self.vae.save_pretrained(folder / "vae", dtype=dtype)
        self.dit.save_pretrained(folder / "dit", dtype=dtype)
        with atomic_path(folder / STARTS_NAME) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=check_frames(start_frames))
        atomic_write_text(folder / INFO_NAME, json.dumps(dataclasses.asdict(self.info), indent=2) + "\n")
        return folder

    @property
    def num_actions(self) -> int:
        """How many discrete actions the model takes."""
        return self.dit.config.num_actions

    @torch.no_grad()
    def reset(self, frame: np.ndarray, seed: int = 0) -> None:
        """Start a new game from a real uint8 (H, W, 3) frame."""
        frame = resize_crop(check_frames(np.asarray(frame)[None]), self.info.width, self.info.height)
        device = next(self.dit.parameters()).device
        latent = self.vae.normalize(self.vae.encode(to_tensor(frame)[None].to(device)).mean)
        self.stream = LatentStream(self.dit, null_text(1, device), settings=self.settings, seed=seed)
        self.decoder = self.vae.start_decode()
        self.noise = torch.Generator(device).manual_seed(seed)
        # A chunk of several frames starts as the first frame held still; its action is the no-op.
        chunk = self.settings.chunk_frames
        still = latent.expand(-1, -1, chunk, -1, -1)
        self.stream.push(still, torch.zeros(1, chunk, dtype=torch.long, device=device))
        self.vae.decode_chunk(self.vae.denormalize(still), self.decoder)

    @torch.no_grad()
    def step(self, action: int) -> np.ndarray:
        """The next chunk's uint8 (chunk_frames, H, W, 3) frames after pressing `action`."""
        if self.stream is None:
            raise KinemaError("reset the world model with a first frame before stepping it")
        if not (isinstance(action, int | np.integer) and 0 <= action < self.num_actions):
            raise KinemaError(f"action must be an integer in 0..{self.num_actions - 1}, got {action!r}")
        device = next(self.dit.parameters()).device
        c = self.dit.config.latent_channels
        h, w = self.vae.latent_shape(1, self.info.height, self.info.width)[2:]
        chunk = self.settings.chunk_frames
        noise = torch.randn(1, c, chunk, h, w, generator=self.noise, device=device)
        actions = torch.full((1, chunk), int(action), dtype=torch.long, device=device)
        latents = self.stream.next_chunk(noise, actions)
        pixels = self.vae.decode_chunk(self.vae.denormalize(latents), self.decoder).clamp(-1, 1)
        return to_frames(pixels[0])

    def rollout(self, first: np.ndarray, actions: list[int], seed: int = 0) -> np.ndarray:
        """The first frame then one frame per action: uint8 (1 + len(actions), H, W, 3)."""
        self.reset(first, seed=seed)
        first = resize_crop(check_frames(np.asarray(first)[None]), self.info.width, self.info.height)[0]
        return np.concatenate([first[None], *(self.step(a) for a in actions)])


def null_text(batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The world DiT's text input: one zero token per clip (it is conditioned on actions, not words)."""
    return torch.zeros(batch, 1, TEXT_DIM, device=device)


def start_frames(folder: str | Path) -> np.ndarray:
    """The real first frames a world pipeline ships, uint8 (N, H, W, 3)."""
    with np.load(Path(folder) / STARTS_NAME) as data:
        return data["frames"]


def start_frames_of(manifest: str | Path, width: int, height: int, count: int = 8) -> np.ndarray:
    """The first frames of up to `count` episodes of a recording, at the model's size."""
    records = [r for r in read_manifest(manifest) if r.meta.get("start", 0) == 0][:count]
    frames = [read_video(clip_path(r, manifest), num_frames=1, fps=r.fps)[0] for r in records]
    return resize_crop(np.concatenate(frames), width, height)
