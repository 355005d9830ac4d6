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
from tqdm import tqdm

from kinema.data.dataset import resize_crop, to_frames, to_tensor
from kinema.data.manifest import clip_path, read_manifest
from kinema.errors import KinemaError
from kinema.generate.stream import LatentStream, StreamSettings
from kinema.io import atomic_path, atomic_write_text, check_frames
from kinema.io.video import read_video, write_video
from kinema.models.dit import VideoDiT
from kinema.models.vae import load_vae

BUNDLED_WORLD = Path(__file__).resolve().parent.parent / "assets" / "breakout-world"
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
    sink_frames: int = 0
    previous_frame: bool = False  # the DiT takes each frame's previous frame as condition channels
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
            previous_frame=self.previous_frame,
        )


class WorldModel:
    """A VAE and a block-causal, action-conditioned DiT that turn key presses into frames."""

    def __init__(
        self, vae: torch.nn.Module, dit: VideoDiT, info: WorldInfo, steps: int | None = None
    ) -> None:
        self.vae, self.dit, self.info = vae.eval(), dit.eval(), info
        self.settings = info.stream_settings(steps)

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

    def new_game(self, frame: np.ndarray, seed: int = 0, steps: int | None = None) -> Game:
        """A game of its own (cache, decoder state, noise) that starts from a real uint8 (H, W, 3) frame."""
        return Game(self, frame, seed, self.settings if steps is None else self.info.stream_settings(steps))

    def rollout(
        self, first: np.ndarray, actions: list[int], seed: int = 0, truth: np.ndarray | None = None
    ) -> np.ndarray:
        """The first frame then one chunk per action: uint8 (1 + chunk_frames * len(actions), H, W, 3).

        With `truth`, the real frames after the first, each chunk is predicted from the real past.
        """
        game = self.new_game(first, seed=seed)
        c = self.settings.chunk_frames
        truths = [None if truth is None else truth[i * c : (i + 1) * c] for i in range(len(actions))]
        chunks = [game.step(a, t) for a, t in zip(actions, truths, strict=True)]
        return np.concatenate([game.first_frame[None], *chunks])


class Game:
    """One player's game: the stream's KV cache, the VAE's decoder state and the noise, over shared weights."""

    @torch.no_grad()
    def __init__(self, world: WorldModel, frame: np.ndarray, seed: int, settings: StreamSettings) -> None:
        self.world, self.settings = world, settings
        info = world.info
        self.first_frame = resize_crop(check_frames(np.asarray(frame)[None]), info.width, info.height)[0]
        self.device = next(world.dit.parameters()).device
        vae = world.vae
        latent = self._encode(self.first_frame[None])
        self.stream = LatentStream(world.dit, null_text(1, self.device), settings=settings, seed=seed)
        self.decoder = vae.start_decode()
        self.noise = torch.Generator(self.device).manual_seed(seed)
        # A chunk of several frames starts as the first frame held still; its action is the no-op.
        chunk = settings.chunk_frames
        still = latent.expand(-1, -1, chunk, -1, -1)
        self.stream.push(still, torch.zeros(1, chunk, dtype=torch.long, device=self.device))
        vae.decode_chunk(vae.denormalize(still), self.decoder)
        self.latent_shape = (world.dit.config.latent_channels, chunk, *latent.shape[3:])

    @property
    def frames_made(self) -> int:
        """Frames so far, the first one included."""
        return self.stream.frames_made

    def _encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (T, H, W, 3) frames at the model's size to normalised latents (1, C, T, h, w)."""
        vae = self.world.vae
        return vae.normalize(vae.encode(to_tensor(frames)[None].to(self.device)).mean)

    @torch.no_grad()
    def step(self, action: int, truth: np.ndarray | None = None) -> np.ndarray:
        """The next chunk's uint8 (chunk_frames, H, W, 3) frames after pressing `action`.

        With `truth`, the real frames of this chunk, the game goes on from those instead of the
        ones it made (teacher forcing), so each step is scored as a one-step prediction.
        """
        n = self.world.num_actions
        if isinstance(action, bool) or not (isinstance(action, int | np.integer) and 0 <= action < n):
            raise KinemaError(f"action must be an integer in 0..{n - 1}, got {action!r}")
        chunk = self.settings.chunk_frames
        noise = torch.randn(1, *self.latent_shape, generator=self.noise, device=self.device)
        actions = torch.full((1, chunk), int(action), dtype=torch.long, device=self.device)
        latents = self.stream.next_chunk(noise, actions, remember=truth is None)
        if truth is not None:
            info = self.world.info
            self.stream.push(self._encode(resize_crop(check_frames(truth), info.width, info.height)), actions)
        vae = self.world.vae
        return to_frames(vae.decode_chunk(vae.denormalize(latents), self.decoder).clamp(-1, 1)[0])


def null_text(batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The world DiT's text input: one zero token per clip (it is conditioned on actions, not words)."""
    return torch.zeros(batch, 1, TEXT_DIM, device=device)


def start_frames(folder: str | Path) -> np.ndarray:
    """The real first frames a world pipeline ships, uint8 (N, H, W, 3)."""
    with np.load(Path(folder) / STARTS_NAME) as data:
        return data["frames"]


def start_frames_of(manifest: str | Path, width: int, height: int, count: int = 8) -> np.ndarray:
    """The first frames of up to `count` clips spread evenly over a recording, at the model's size.

    Clips start mid-episode too, so the games can begin from varied states, not only the reset screen.
    """
    records = read_manifest(manifest)
    picks = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round().astype(int))
    frames = [read_video(clip_path(records[i], manifest), num_frames=1, fps=records[i].fps)[0] for i in picks]
    return resize_crop(np.concatenate(frames), width, height)


def write_rollouts(
    world: WorldModel,
    manifest: str | Path,
    out: str | Path,
    *,
    frames: int = 64,
    teacher_forced: bool = False,
    clips: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Replay recorded clips' actions from their real first frames; write made and true videos by the same names.

    Returns (made, truth) folders for `kinema eval MADE --reference TRUTH`. A rollout longer than
    its clip replays the clip's actions again from the start; the truth is as long as the clip.
    Teacher-forced rollouts predict each frame from the real ones before it.
    """
    made_dir, truth_dir = Path(out) / "made", Path(out) / "truth"
    records = [r for r in read_manifest(manifest) if r.actions and r.num_frames > 1][:clips]
    if not records:
        raise KinemaError(f"{manifest}: no clip with actions and more than one frame")
    info = world.info
    for record in tqdm(records, desc="rollout", unit="clip", disable=not progress):
        real, _ = read_video(clip_path(record, manifest))
        real = resize_crop(real, info.width, info.height)
        steps = -(-(frames - 1) // world.settings.chunk_frames)
        actions = [record.actions[1 + i % (len(real) - 1)] for i in range(steps)]
        truth = real[1:] if teacher_forced else None
        if teacher_forced:
            steps = min(steps, (len(real) - 1) // world.settings.chunk_frames)
        video = world.rollout(real[0], actions[:steps], seed=seed, truth=truth)[:frames]
        name = Path(record.path).with_suffix(".mp4").name
        write_video(made_dir / name, video, info.fps, crf=12)
        write_video(truth_dir / name, real[:frames], info.fps, crf=12)
    return made_dir, truth_dir
