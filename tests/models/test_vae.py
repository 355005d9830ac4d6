"""kinema.models.vae: shapes, causality, streaming, save/load, latent stats, learning, and the Wan adapter."""

from __future__ import annotations

import json
import math

import pytest
import torch

from kinema.data.dataset import to_tensor
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.models.losses import vae_loss
from kinema.models.vae import (
    CausalVAE,
    DiagonalGaussian,
    VAEConfig,
    WanVAE,
    load_vae,
)

TINY = {
    "latent_channels": 4,
    "base_channels": 8,
    "channel_multipliers": (1, 2, 2),
    "spatial_downsample": 4,
    "temporal_downsample": 4,
    "norm_groups": 2,
}


def tiny_vae(seed: int = 0, **overrides) -> CausalVAE:
    """A tiny randomly initialised VAE in eval mode."""
    torch.manual_seed(seed)
    return CausalVAE(VAEConfig(**{**TINY, **overrides})).eval()


def video(frames: int, size: int = 16, seed: int = 0, batch: int = 1) -> torch.Tensor:
    """Random video in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=generator) * 2 - 1


def first_frame_of(latent_index: int, t: int = 4) -> int:
    """Index of the first video frame that latent frame `latent_index` decodes to."""
    return 0 if latent_index == 0 else 1 + t * (latent_index - 1)


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    return tiny_vae()


@torch.no_grad()
@pytest.mark.parametrize(("frames", "latent_frames"), [(1, 1), (5, 2), (9, 3)])
def test_four_x_time_keeps_the_first_frame_alone(vae, frames, latent_frames):
    x = video(frames, batch=2)
    posterior = vae.encode(x)
    assert posterior.mean.shape == (2, 4, latent_frames, 4, 4) == posterior.logvar.shape
    assert vae.latent_shape(frames, 16, 16) == (4, latent_frames, 4, 4)
    assert vae.decode(posterior.mean).shape == x.shape


@torch.no_grad()
@pytest.mark.parametrize("frames", [1, 2, 3, 6])
def test_one_x_time_takes_any_length(frames):
    model = tiny_vae(temporal_downsample=1)
    z = model.encode(video(frames)).mean
    assert z.shape == (1, 4, frames, 4, 4)
    assert model.decode(z).shape == (1, 3, frames, 16, 16)


@torch.no_grad()
def test_eight_x_space():
    model = tiny_vae(channel_multipliers=(1, 1, 2, 2), spatial_downsample=8)
    z = model.encode(video(5)).mean
    assert z.shape == (1, 4, 2, 2, 2)
    assert model.decode(z).shape == (1, 3, 5, 16, 16)


# The demo VAE's layout: pixels folded 4x4 into channels, per-frame convolutions, no time compression.
PATCHED_PER_FRAME = {"patch_size": 4, "channel_multipliers": (1,), "temporal_downsample": 1, "time_kernel": 1}
# 4x time with no convolution over time: 4 frames and 4x4 pixels folded into channels (frame 0 alone).
TIME_FOLDED = {"patch_size": 4, "time_patch": 4, "channel_multipliers": (1,), "time_kernel": 1}
# Every 4x-time layout: all by convolution, all by folding, and half of each.
FOUR_X_TIME = [{}, TIME_FOLDED, {"time_patch": 2}]


@torch.no_grad()
def test_patchified_vae_shapes():
    per_frame = tiny_vae(**PATCHED_PER_FRAME)
    assert per_frame.encode(video(3)).mean.shape == (1, 4, 3, 4, 4)
    assert not any(isinstance(m, torch.nn.Conv3d) and m.stride[1] > 1 for m in per_frame.modules())
    # patch 2 leaves one halving of space to a convolution; time halves in the coarsest two stages.
    mixed = tiny_vae(patch_size=2, spatial_downsample=8)
    assert mixed.encode(video(9)).mean.shape == (1, 4, 3, 2, 2)
    assert mixed.decode(mixed.encode(video(9)).mean).shape == (1, 3, 9, 16, 16)


@torch.no_grad()
@pytest.mark.parametrize("layout", FOUR_X_TIME[1:])
@pytest.mark.parametrize(("frames", "latent_frames"), [(1, 1), (5, 2), (9, 3)])
def test_time_folded_vae_shapes(layout, frames, latent_frames):
    model = tiny_vae(**layout)
    z = model.encode(video(frames)).mean
    assert z.shape == (1, 4, latent_frames, 4, 4)
    assert model.decode(z).shape == (1, 3, frames, 16, 16)


def latent_change_from_flipping(model: CausalVAE, x: torch.Tensor, frame: int) -> torch.Tensor:
    """How much each latent frame's encoding moves when one video frame is negated."""
    bumped = x.clone()
    bumped[:, :, frame] = -bumped[:, :, frame]
    return (model.encode(bumped).mean - model.encode(x).mean).abs().amax(dim=(0, 1, 3, 4))


@torch.no_grad()
def test_fully_time_folded_vae_codes_each_group_of_four_frames_alone():
    changed = latent_change_from_flipping(tiny_vae(**TIME_FOLDED), video(9), 6)  # frames 5-8: latent 2
    assert changed[:2].max() == 0 and changed[2] > 1e-3


@torch.no_grad()
def test_per_frame_vae_keeps_frames_apart():
    changed = latent_change_from_flipping(tiny_vae(**PATCHED_PER_FRAME), video(4), 2)
    assert changed[[0, 1, 3]].max() == 0 and changed[2] > 1e-3


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((1, 3, 8, 16, 16), r"frames must be 1 \+ 4k \(1, 5, 9, 13, \.\.\.\), got 8"),
        ((1, 3, 5, 18, 16), "height and width must be multiples of 4, got 18x16"),
        ((1, 4, 5, 16, 16), r"video must be shaped \(B, 3, T, H, W\)"),
        ((3, 5, 16, 16), r"video must be shaped \(B, 3, T, H, W\)"),
    ],
)
def test_bad_video_shapes_say_what_is_valid(vae, shape, message):
    with pytest.raises(ValueError, match=message):
        vae.encode(torch.zeros(shape))


def test_bad_latents_and_configs_raise(vae):
    with pytest.raises(ValueError, match=r"latents must be shaped \(B, 4, T', H', W'\)"):
        vae.decode(torch.zeros(1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="channel_multipliers must be 4 positive numbers"):
        VAEConfig(channel_multipliers=(1, 2), spatial_downsample=8)
    with pytest.raises(ValueError, match="temporal_downsample must be a power of two"):
        VAEConfig(temporal_downsample=3)
    with pytest.raises(
        ValueError, match="patch_size must be a power of two no larger than spatial_downsample"
    ):
        VAEConfig(patch_size=16)
    with pytest.raises(ValueError, match="patch_size must be a power of two"):
        VAEConfig(patch_size=3)
    with pytest.raises(ValueError, match="time_kernel must be >= 1"):
        VAEConfig(time_kernel=0)
    with pytest.raises(
        ValueError, match="time_patch must be a power of two no larger than temporal_downsample"
    ):
        VAEConfig(time_patch=8)


@torch.no_grad()
@pytest.mark.parametrize("layout", FOUR_X_TIME)
def test_encoder_is_causal(layout):
    vae = tiny_vae(**layout)
    x = video(9)
    base = vae.encode(x).mean
    for t in range(9):
        bumped = x.clone()
        bumped[:, :, t] = -bumped[:, :, t]
        z = vae.encode(bumped).mean
        index = math.ceil(t / 4)  # frame 0 -> latent 0, frames 1-4 -> latent 1, frames 5-8 -> latent 2
        torch.testing.assert_close(z[:, :, :index], base[:, :, :index], rtol=0, atol=1e-6)
        assert (z[:, :, index] - base[:, :, index]).abs().max() > 1e-3, f"frame {t} must reach latent {index}"


@torch.no_grad()
@pytest.mark.parametrize("layout", FOUR_X_TIME)
def test_decoder_is_causal(layout):
    vae = tiny_vae(**layout)
    z = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    base = vae.decode(z)
    for j in range(3):
        bumped = z.clone()
        bumped[:, :, j] += 1.0
        frames = vae.decode(bumped)
        first = first_frame_of(j)
        torch.testing.assert_close(frames[:, :, :first], base[:, :, :first], rtol=0, atol=1e-6)
        assert (frames[:, :, first] - base[:, :, first]).abs().max() > 1e-3


@torch.no_grad()
@pytest.mark.parametrize("chunk", [1, 2])
@pytest.mark.parametrize(
    ("time", "layout"),
    [
        (4, {}),
        (1, {}),
        (4, {"patch_size": 2}),
        (1, PATCHED_PER_FRAME),
        (4, TIME_FOLDED),
        (4, {"time_patch": 2}),
    ],
)
def test_streaming_decode_matches_one_shot(chunk, time, layout):
    model = tiny_vae(**{**layout, "temporal_downsample": time})
    z = torch.randn(1, 4, 5, 4, 4, generator=torch.Generator().manual_seed(2))
    whole = model.decode(z)
    state = model.start_decode()
    pieces = [model.decode_chunk(z[:, :, i : i + chunk], state) for i in range(0, 5, chunk)]
    sizes = [1 + time * (min(chunk, 5) - 1)] + [time * min(chunk, 5 - i) for i in range(chunk, 5, chunk)]
    assert [p.shape[2] for p in pieces] == sizes
    assert (torch.cat(pieces, dim=2) - whole).abs().max() <= 1e-5


@torch.no_grad()
@pytest.mark.parametrize("layout", FOUR_X_TIME)
def test_streaming_encode_matches_one_shot(layout):
    vae = tiny_vae(**layout)
    x = video(13)
    whole = vae.encode(x)
    state = vae.start_encode()
    pieces = [vae.encode_chunk(x[:, :, a:b], state) for a, b in [(0, 1), (1, 9), (9, 13)]]
    assert (torch.cat([p.mean for p in pieces], dim=2) - whole.mean).abs().max() <= 1e-5
    assert (torch.cat([p.logvar for p in pieces], dim=2) - whole.logvar).abs().max() <= 1e-5
    with pytest.raises(ValueError, match=r"chunks after the first must hold 4k frames"):
        vae.encode_chunk(x[:, :, :3], state)
    with pytest.raises(ValueError, match=r"the first chunk must hold 1 \+ 4k frames"):
        vae.encode_chunk(x[:, :, :4], vae.start_encode())


def test_posterior_mean_is_deterministic_and_samples_are_seeded(vae):
    with torch.no_grad():
        a, b = vae.encode(video(5)), vae.encode(video(5))
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    assert a.mode() is a.mean
    sample = a.sample(torch.Generator().manual_seed(3))
    torch.testing.assert_close(sample, a.sample(torch.Generator().manual_seed(3)))
    assert not torch.equal(sample, a.mean)
    standard = DiagonalGaussian(torch.zeros(2, 4, 1, 2, 2), torch.zeros(2, 4, 1, 2, 2))
    torch.testing.assert_close(standard.kl(), torch.zeros(2))
    assert (DiagonalGaussian(torch.ones(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2)).kl() == 8.0).all()


def shapes_batches(count: int, seed: int = 0) -> list[torch.Tensor]:
    """Batches of two 5-frame 16x16 shapes-world clips each."""
    config = ShapesConfig(width=16, height=16, frames=5)
    return [
        torch.stack([to_tensor(make_clip(config, 2 * b + i, seed).frames) for i in range(2)])
        for b in range(count)
    ]


def test_latent_stats_normalize_that_data(vae, tmp_path):
    batches = shapes_batches(3)
    mean, std = vae.measure_latent_stats({"video": b} for b in batches)
    assert mean.shape == std.shape == (4,)
    with torch.no_grad():
        z = torch.cat([vae.encode(b).mean for b in batches])
    normed = vae.normalize(z).transpose(0, 1).flatten(1)
    torch.testing.assert_close(normed.mean(dim=1), torch.zeros(4), rtol=0, atol=1e-4)
    torch.testing.assert_close(normed.std(dim=1, correction=0), torch.ones(4), rtol=0, atol=1e-4)
    torch.testing.assert_close(vae.denormalize(vae.normalize(z)), z, rtol=0, atol=1e-5)
    loaded = CausalVAE.from_pretrained(vae.save_pretrained(tmp_path / "vae"))
    torch.testing.assert_close(loaded.latent_mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(loaded.latent_std, std, rtol=0, atol=0)


def test_save_load_round_trip(tmp_path):
    model = tiny_vae(seed=5)
    folder = model.save_pretrained(tmp_path / "vae")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "CausalVAE"
    assert config["channel_multipliers"] == [1, 2, 2]
    for loaded in (CausalVAE.from_pretrained(folder), load_vae(folder)):
        assert isinstance(loaded, CausalVAE) and not loaded.training
        assert loaded.config == model.config
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.decode(loaded.encode(video(5)).mean), model.decode(model.encode(video(5)).mean)
        )
    half = model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (folder / "model.safetensors").stat().st_size


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for enabled in (False, True):
        model = tiny_vae(seed=6).train()
        model.enable_gradient_checkpointing(enabled)
        recon, _ = model(video(5), sample=False)
        recon.square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@torch.no_grad()
def test_runs_under_bf16_autocast(vae):
    x = video(5)
    reference = vae.decode(vae.encode(x).mean)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vae.decode(vae.encode(x).mean)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - reference).abs().max() < 0.1 * reference.abs().max()


def test_learns_to_reconstruct_shapes_clips():
    torch.manual_seed(0)
    config = ShapesConfig(width=32, height=32, frames=5)
    x = torch.stack([to_tensor(make_clip(config, i, seed=0).frames) for i in (0, 2)])
    model = CausalVAE(VAEConfig(**TINY)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(80):
        recon, posterior = model(x, generator=torch.Generator().manual_seed(step))
        loss, parts = vae_loss(recon, x, posterior)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["l1"].item())
    first, last = losses[0], sum(losses[-5:]) / 5
    assert last < 0.5 * first, f"L1 went from {first:.3f} to {last:.3f}"
    # Each reconstruction is nearer its own clip than the other: it encodes its input, not an average.
    with torch.no_grad():
        recon = model.eval().decode(model.encode(x).mean)
    own = (recon - x).abs().mean(dim=(1, 2, 3, 4))
    swapped = (recon - x.flip(0)).abs().mean(dim=(1, 2, 3, 4))
    assert (own < swapped).all(), (own, swapped)


# The Wan adapter, on a tiny randomly initialised diffusers AutoencoderKLWan (4x space, 4x time).


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(7)
    model = diffusers.AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 0.5, 2.0, 1.0],
    )
    folder = tmp_path_factory.mktemp("wan")
    model.save_pretrained(folder)
    return folder


@torch.no_grad()
def test_wan_adapter_matches_diffusers(wan_folder):
    from diffusers import AutoencoderKLWan

    vae = load_vae(wan_folder)
    assert isinstance(vae, WanVAE)
    assert (vae.spatial_downsample, vae.temporal_downsample, vae.latent_channels) == (4, 4, 4)
    reference = AutoencoderKLWan.from_pretrained(wan_folder).eval()
    x = video(5)
    posterior = vae.encode(x)
    assert posterior.mean.shape == (1, 4, 2, 4, 4) == tuple((1, *vae.latent_shape(5, 16, 16)))
    expected = reference.encode(x).latent_dist
    torch.testing.assert_close(posterior.mean, expected.mean)
    torch.testing.assert_close(posterior.logvar, expected.logvar)
    frames = vae.decode(posterior.mean)
    assert frames.shape == x.shape
    torch.testing.assert_close(frames, reference.decode(expected.mean).sample)
    with pytest.raises(ValueError, match=r"frames must be 1 \+ 4k"):
        vae.encode(video(4))


@torch.no_grad()
def test_wan_adapter_normalizes_with_its_config_stats(wan_folder):
    vae = load_vae(wan_folder)
    z = torch.randn(1, 4, 2, 4, 4)
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1, 1)
    std = torch.tensor([1.5, 0.5, 2.0, 1.0]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(vae.normalize(z), (z - mean) / std)
    torch.testing.assert_close(vae.denormalize(vae.normalize(z)), z)


@torch.no_grad()
def test_wan_adapter_streams_like_one_shot(wan_folder):
    vae = load_vae(wan_folder)
    x = video(9)
    whole = vae.encode(x)
    state = vae.start_encode()
    pieces = [vae.encode_chunk(x[:, :, a:b], state).mean for a, b in [(0, 5), (5, 9)]]
    assert (torch.cat(pieces, dim=2) - whole.mean).abs().max() <= 1e-5
    frames = vae.decode(whole.mean)
    state = vae.start_decode()
    streamed = [vae.decode_chunk(whole.mean[:, :, i : i + 1], state) for i in range(3)]
    assert [s.shape[2] for s in streamed] == [1, 4, 4]
    assert (torch.cat(streamed, dim=2) - frames).abs().max() <= 1e-5
