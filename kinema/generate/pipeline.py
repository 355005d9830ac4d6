"""Text (and optionally a first frame) to video: prompt -> text states -> DiT sampling -> VAE decode.

A pipeline is a folder holding `vae/`, `dit/` and `kinema.json`, which names the text encoder
and the defaults the model was trained for (size, frames, fps, steps, guidance, shift).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.data.dataset import resize_crop, to_frames, to_tensor
from kinema.diffusion.flow import noise_settings_problem, previous_frames
from kinema.diffusion.sampling import ModelGuidance, ModelVelocity, make_noise, make_sigmas, sample
from kinema.errors import KinemaError
from kinema.generate.stream import LatentStream, StreamSettings, first_frame_channels
from kinema.io import atomic_write_text, check_frames
from kinema.models.dit import ATTENTION_MODES, DiTConfig, VideoDiT
from kinema.models.text import TextEncoder, load_text_encoder
from kinema.models.vae import load_vae

BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "shapes-t2v"
BUNDLED_STREAM = BUNDLED.parent / "shapes-stream"
INFO_NAME = "kinema.json"


@dataclass
class PipelineInfo:
    """What a pipeline was trained for, and the defaults `generate` uses."""

    text_encoder: str = "minilm"
    width: int = 64
    height: int = 64
    frames: int = 17
    fps: float = 8.0
    steps: int = 20
    guidance: float = 4.0
    shift: float = 1.0
    sampler: str = "euler"
    prediction: str = "velocity"  # what the DiT outputs: the velocity (Wan) or the clean sample
    noise_correlation: float = 0.0  # how much of its noise every latent frame shares (as trained)
    # A block-causal DiT (a chunk of latent frames sees only the chunks before it) also streams:
    # kinema stream, with finished chunks cached at noise level `stream_context_sigma`.
    attention: str = "bidirectional"
    chunk_frames: int = 1
    stream_context_sigma: float = 0.0
    # Frame stacking: the DiT's last latent-channels condition channels hold each frame's previous
    # frame, as noisy as the frames being denoised (t2v.previous_frame).
    previous_frame: bool = False
    # Emu Video's factorisation, for a DiT that also learned image-to-video: with no image given,
    # a first pass of this many steps draws a clip whose first frame the video is then made from.
    # A clean first frame lets the DiT place a motion relative to it (docs/training.md); 0 is off.
    first_frame_steps: int = 0
    # The first pass draws the first frame alone, as an image: for a DiT trained on images beside
    # clips (t2v.image_prob), and far cheaper than a whole clip.
    first_frame_alone: bool = False

    def __post_init__(self) -> None:
        problem = noise_settings_problem(self.prediction, self.noise_correlation)
        if self.attention not in ATTENTION_MODES:
            problem = f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}"
        if self.first_frame_steps < 0:
            problem = f"first_frame_steps must be >= 0, got {self.first_frame_steps}"
        if self.first_frame_steps and self.streams:
            problem = (
                "first_frame_steps is for bidirectional pipelines: a stream draws its first frame itself"
            )
        if problem:
            raise KinemaError(problem)

    @property
    def streams(self) -> bool:
        """Whether the DiT is block-causal, so it can make a video chunk by chunk."""
        return self.attention == "block_causal"


def first_frame_condition(first: torch.Tensor, keep: torch.Tensor, frames: int) -> torch.Tensor:
    """The DiT's condition input for image-to-video: (B, 1 + C, frames, h, w).

    Channel 0 is 1 where a first frame is given, channels 1.. hold its latent; both live on latent
    frame 0 only (a causal VAE encodes the first frame alone), and rows with keep=False are all zero.
    """
    weight = keep.to(first.dtype).view(-1, 1, 1, 1, 1)
    frame0 = torch.cat([torch.ones_like(first[:, :1]), first], dim=1) * weight
    condition = first.new_zeros(first.shape[0], first.shape[1] + 1, frames, *first.shape[3:])
    condition[:, :, :1] = frame0
    return condition


def condition_problem(config: DiTConfig, previous_frame: bool) -> str | None:
    """Why the DiT's condition channels can't hold a first frame and (with frame stacking) a previous one."""
    first = first_frame_channels(config, previous_frame)
    if first not in (0, config.latent_channels + 1):
        stacked = f" + {config.latent_channels} for the previous frame" if previous_frame else ""
        return (
            f"condition_channels must be 0 or {config.latent_channels + 1} for a first frame (mask + latent)"
            f"{stacked}, got {config.condition_channels}"
        )
    return None


def stack_previous_frame(model: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`model` with frame stacking: each frame's previous frame in x joins the condition it is given."""

    def stacked(
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        *,
        condition: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        previous = previous_frames(x)
        condition = previous if condition is None else torch.cat([condition, previous], dim=1)
        return model(x, t, text, condition=condition, **kwargs)

    return stacked


class Pipeline:
    """A VAE, a DiT and a text encoder that together turn prompts into videos."""

    def __init__(
        self, vae: torch.nn.Module, dit: VideoDiT, text_encoder: TextEncoder, info: PipelineInfo
    ) -> None:
        self.vae, self.dit, self.text_encoder, self.info = vae.eval(), dit.eval(), text_encoder, info

    @classmethod
    def from_pretrained(cls, folder: str | Path = BUNDLED, device: str = "cpu") -> Pipeline:
        """Load a pipeline folder (the bundled shapes model by default) in fp32 on `device`."""
        folder = Path(folder)
        if folder == BUNDLED and not folder.is_dir():
            raise KinemaError(
                f"no bundled model at {folder} yet: train one (docs/training.md) and pass its folder"
            )
        if not (folder / INFO_NAME).is_file():
            raise KinemaError(f"{folder}: not a pipeline folder (no {INFO_NAME} beside vae/ and dit/)")
        try:
            info = PipelineInfo(**json.loads((folder / INFO_NAME).read_text(encoding="utf-8")))
        except KinemaError as e:
            raise KinemaError(f"{folder / INFO_NAME}: {e}") from None
        vae = load_vae(folder / "vae", device=device).float()
        dit = VideoDiT.from_pretrained(folder / "dit", device=device, dtype=torch.float32)
        problem = condition_problem(dit.config, info.previous_frame)
        if problem:
            raise KinemaError(f"{folder}: the DiT's {problem}")
        return cls(vae, dit, load_text_encoder(info.text_encoder), info)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write vae/, dit/ and kinema.json; weights are stored as `dtype` (fp16 for shipping)."""
        folder = Path(folder)
        self.vae.save_pretrained(folder / "vae", dtype=dtype)
        self.dit.save_pretrained(folder / "dit", dtype=dtype)
        atomic_write_text(folder / INFO_NAME, json.dumps(dataclasses.asdict(self.info), indent=2) + "\n")
        return folder

    def valid_frames(self, frames: int) -> None:
        """Raise KinemaError unless the VAE can make exactly `frames` frames."""
        step = self.vae.temporal_downsample
        if frames < 1 or (frames - 1) % step:
            examples = ", ".join(str(1 + step * k) for k in range(1, 6))
            raise KinemaError(f"frames must be 1 + {step}k ({examples}, ...), got {frames}")

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        *,
        negative: str = "",
        frames: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        image: np.ndarray | None = None,
        first_frame_steps: int | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """One video, uint8 (T, H, W, 3), optionally starting from `image` (uint8 H, W, 3);
        the same inputs, settings and seed give the same video. A block-causal pipeline streams it.

        Without an image, `first_frame_steps` > 0 (default: the pipeline's) first draws a clip (or,
        with `first_frame_alone`, an image) in that many steps and makes the video from its first
        frame, with fresh noise.
        """
        frames = self.info.frames if frames is None else frames
        if self.info.streams:
            pieces = self.stream(
                prompt, frames, negative=negative, steps=steps, guidance=guidance, seed=seed, image=image
            )
            return np.concatenate(list(pieces))
        steps = self.info.steps if steps is None else steps
        guidance = self.info.guidance if guidance is None else guidance
        first_frame_steps = self.info.first_frame_steps if first_frame_steps is None else first_frame_steps
        self.valid_frames(frames)
        self._check_settings(steps, guidance, first_frame_steps, image is not None)
        device = _device_of(self.dit)
        shape = (
            1,
            self.dit.config.latent_channels,
            *self.vae.latent_shape(frames, self.info.height, self.info.width)[1:],
        )
        text = [t.to(device) for t in self.text_encoder.encode([prompt])]
        if guidance != 1.0:
            text += [t.to(device) for t in self.text_encoder.encode([negative])]
        # One seeded stream: the first draw is the video's noise unless a first pass takes it.
        noise = torch.Generator().manual_seed(seed)
        first = None if image is None else self._image_latent(image).to(device)
        if first is None and first_frame_steps:
            drawn = (*shape[:2], 1, *shape[3:]) if self.info.first_frame_alone else shape
            first = self._sample(drawn, noise, text, None, first_frame_steps, guidance, progress)[:, :, :1]
        latents = self._sample(shape, noise, text, first, steps, guidance, progress)
        # The VAE may live elsewhere (a training run keeps it on the CPU beside a CUDA DiT).
        latents = latents.to(_device_of(self.vae))
        video = self.vae.decode(self.vae.denormalize(latents)).clamp(-1, 1)
        return ((video[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()

    def _check_settings(self, steps: int, guidance: float, first_frame_steps: int, has_image: bool) -> None:
        """Raise KinemaError for sampling settings `generate` can't use with this pipeline."""
        if steps < 1 or guidance < 0 or first_frame_steps < 0:
            raise KinemaError(
                f"steps must be >= 1, guidance >= 0 and first_frame_steps >= 0, got steps={steps}, "
                f"guidance={guidance}, first_frame_steps={first_frame_steps}"
            )
        if first_frame_channels(self.dit.config, self.info.previous_frame):
            return
        if has_image:
            raise KinemaError(
                "this model was not trained with first-frame conditioning, so it can't take an image"
            )
        if first_frame_steps:
            raise KinemaError(
                "first_frame_steps needs a model trained with first-frame conditioning (t2v.first_frame_prob > 0)"
            )

    def _sample(
        self,
        shape: tuple[int, ...],
        noise: torch.Generator,
        text: list[torch.Tensor],
        first: torch.Tensor | None,
        steps: int,
        guidance: float,
        progress: bool,
    ) -> torch.Tensor:
        """Latents of one clip sampled from the next draw of `noise`, after a first frame if given.

        `text` holds the prompt's states and mask, then the negative prompt's when guidance is on.
        """
        device = _device_of(self.dit)
        start = make_noise(shape, noise, device=device, frame_correlation=self.info.noise_correlation)
        kwargs = self._condition(first, shape)
        model = stack_previous_frame(self.dit) if self.info.previous_frame else self.dit
        if guidance == 1.0:
            velocity = ModelVelocity(model, *text[:2], kwargs, self.info.prediction)
        else:
            velocity = ModelGuidance(model, *text, kwargs, self.info.prediction)
        sigmas = make_sigmas(steps, shift=self.info.shift).to(device)
        return sample(velocity, start, sigmas, method=self.info.sampler, guidance=guidance, progress=progress)

    def stream(
        self,
        prompt: str,
        frames: int,
        *,
        negative: str = "",
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        window_frames: int | None = None,
        image: np.ndarray | None = None,
    ) -> Iterator[np.ndarray]:
        """A video of any length, made chunk by chunk over a KV cache: uint8 (n, H, W, 3) pieces.

        Needs a block-causal DiT. It keeps the last `window_frames` latent frames (default: the
        training clip's, less the chunk being made), so memory stays flat however long the video.
        An `image` (uint8 H, W, 3) is the first frame: the stream goes on from it, as a world model
        goes on from its start frame.
        """
        settings = self._stream_settings(frames, steps, guidance, window_frames)
        first = None if image is None else self._image_latent(image)
        return self._stream_pieces(prompt, frames, negative, seed, settings, first)

    @torch.no_grad()
    def _stream_pieces(
        self,
        prompt: str,
        frames: int,
        negative: str,
        seed: int,
        settings: StreamSettings,
        first: torch.Tensor | None,
    ) -> Iterator[np.ndarray]:
        device = _device_of(self.dit)
        states, mask = (t.to(device) for t in self.text_encoder.encode([prompt]))
        uncond = None
        if settings.guidance != 1.0:
            uncond = tuple(t.to(device) for t in self.text_encoder.encode([negative]))
        stream = LatentStream(self.dit, states, mask, settings=settings, seed=seed, uncond=uncond)
        decoder = self.vae.start_decode()
        generator = torch.Generator(device).manual_seed(seed)
        latent = self.vae.latent_shape(1, self.info.height, self.info.width)
        shape = (1, self.dit.config.latent_channels, settings.chunk_frames, *latent[2:])
        made = 0
        while made < frames:
            if first is not None and made == 0:
                # A chunk of several frames starts as the given frame held still.
                latents = first.to(device).expand(-1, -1, settings.chunk_frames, -1, -1)
                stream.push(latents)
            else:
                latents = stream.next_chunk(torch.randn(shape, generator=generator, device=device))
            pixels = self.vae.decode_chunk(self.vae.denormalize(latents.to(_device_of(self.vae))), decoder)
            piece = to_frames(pixels.clamp(-1, 1)[0])[: frames - made]
            made += len(piece)
            yield piece

    def _stream_settings(
        self, frames: int, steps: int | None, guidance: float | None, window_frames: int | None
    ) -> StreamSettings:
        """The stream's settings from the pipeline's defaults and the caller's, each checked."""
        info = self.info
        if not info.streams:
            raise KinemaError(
                "this pipeline's DiT is bidirectional, so it can't stream; train one with "
                "t2v.attention=block_causal (configs/stream_shapes.yaml)"
            )
        trained = self.vae.latent_shape(info.frames, info.height, info.width)[1]
        window = trained - info.chunk_frames if window_frames is None else window_frames
        if frames < 1:
            raise KinemaError(f"frames must be >= 1, got {frames}")
        try:
            return StreamSettings(
                chunk_frames=info.chunk_frames,
                steps=info.steps if steps is None else steps,
                shift=info.shift,
                sampler=info.sampler,
                context_sigma=info.stream_context_sigma,
                sink_frames=0,
                window_frames=window,
                previous_frame=info.previous_frame,
                guidance=info.guidance if guidance is None else guidance,
            )
        except ValueError as e:
            raise KinemaError(str(e)) from None

    def _condition(self, first: torch.Tensor | None, shape: tuple[int, ...]) -> dict:
        """The DiT's first-frame `condition` input: the frame's latent when given, else all zeros."""
        if not first_frame_channels(self.dit.config, self.info.previous_frame):
            return {}
        device = _device_of(self.dit)
        keep = torch.tensor([first is not None], device=device)
        if first is None:
            first = torch.zeros(1, shape[1], 1, *shape[3:], device=device)
        return {"condition": first_frame_condition(first, keep, frames=shape[2])}

    @torch.no_grad()
    def _image_latent(self, image: np.ndarray) -> torch.Tensor:
        """An RGB image (uint8 H, W, 3), resized and cropped to the model's size, as its normalised
        latent frame (1, C, 1, h, w) on the VAE's device."""
        frame = resize_crop(check_frames(np.asarray(image)[None]), self.info.width, self.info.height)
        pixels = to_tensor(frame)[None].to(_device_of(self.vae))
        return self.vae.normalize(self.vae.encode(pixels).mean)


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@functools.cache
def _cached_pipeline(folder: str) -> Pipeline:
    return Pipeline.from_pretrained(folder)


def sweep_generator(
    prompt: str, seed: int, model: str | Path = BUNDLED, cfg: float | None = None, **settings: Any
) -> tuple[np.ndarray, float]:
    """A pipeline (the bundled one by default, loaded once) as a `kinema sweep` generator.

    `settings` are `generate`'s (steps, guidance, frames, negative); `cfg` is another name for guidance.
    """
    if cfg is not None:
        settings["guidance"] = cfg
    pipeline = _cached_pipeline(str(model))
    return pipeline.generate(prompt, seed=seed, **settings), pipeline.info.fps
