"""kinema.models.losses: zero when equal, the frequency term's reason to exist, KL scaling, PatchGAN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kinema.data.dataset import to_tensor
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.models.losses import (
    PatchDiscriminator,
    frequency_loss,
    hinge_d_loss,
    hinge_g_loss,
    vae_loss,
)
from kinema.models.vae import DiagonalGaussian


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    """Two real shapes-world clips, (2, 3, 5, 32, 32) in [-1, 1]."""
    config = ShapesConfig(width=32, height=32, frames=5)
    return torch.stack([to_tensor(make_clip(config, i, seed=0).frames) for i in (0, 2)])


def posterior(mean: float = 0.0, logvar: float = 0.0) -> DiagonalGaussian:
    """A constant posterior over (2, 4, 2, 8, 8) latents."""
    shape = (2, 4, 2, 8, 8)
    return DiagonalGaussian(torch.full(shape, mean), torch.full(shape, logvar))


def blur(video: torch.Tensor, size: int) -> torch.Tensor:
    """Box-blur every frame of (B, C, T, H, W) with a size x size kernel (edges replicated)."""
    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)
    pad = size // 2
    blurred = F.avg_pool2d(F.pad(frames, (pad, pad, pad, pad), mode="replicate"), size, stride=1)
    return blurred.reshape(b, t, c, h, w).transpose(1, 2)


def test_identical_inputs_cost_only_the_kl(clips):
    loss, parts = vae_loss(clips, clips.clone(), posterior())
    assert parts["l1"] == 0 and parts["freq"] == 0 and parts["kl"] == 0 and loss == 0
    loss, parts = vae_loss(clips, clips.clone(), posterior(mean=1.0), kl_weight=1e-3)
    # KL of N(1, 1) to N(0, 1) is 0.5 per latent; per input value: 0.5 * 512 latents / 15360 values.
    torch.testing.assert_close(parts["kl"], torch.tensor(0.5 * 512 / 15360))
    torch.testing.assert_close(loss, 1e-3 * parts["kl"])


def test_different_inputs_cost_something(clips):
    noisy = clips + 0.1 * torch.randn(clips.shape, generator=torch.Generator().manual_seed(0))
    loss, parts = vae_loss(noisy, clips, posterior(), freq_weight=0.5)
    assert parts["l1"] > 0.05 and parts["freq"] > 0
    torch.testing.assert_close(loss, parts["l1"] + 0.5 * parts["freq"])
    _, without = vae_loss(noisy, clips, posterior(), freq_weight=0.0)
    assert without["freq"] == 0


def test_frequency_term_charges_blur_that_l1_rates_like_a_brightness_shift(clips):
    blurred = blur(clips, 3)
    l1 = (blurred - clips).abs().mean()
    shifted = clips + l1  # a brightness error with exactly the same L1 as the blur
    _, blur_parts = vae_loss(blurred, clips, posterior())
    _, shift_parts = vae_loss(shifted, clips, posterior())
    torch.testing.assert_close(blur_parts["l1"], shift_parts["l1"])  # L1 alone can't tell them apart
    assert blur_parts["freq"] > 10 * shift_parts["freq"]
    assert blur_parts["loss"] > 2 * shift_parts["loss"]
    # And more blur costs more.
    assert frequency_loss(blur(clips, 5), clips) > 1.2 * frequency_loss(blurred, clips)


def test_frequency_loss_works_on_images_and_has_gradients(clips):
    images = clips[:, :, 0]
    recon = blur(clips, 3)[:, :, 0].requires_grad_()
    frequency_loss(recon, images).backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0


def test_patch_discriminator_and_hinge_losses(clips):
    torch.manual_seed(0)
    disc = PatchDiscriminator(channels=8, layers=3)
    logits = disc(clips)
    assert logits.shape == (10, 1, 4, 4)  # every frame of both clips, one logit per 8x8-strided patch
    assert disc(clips[:, :, 0]).shape == (2, 1, 4, 4)
    confident_real, confident_fake = torch.full((4,), 2.0), torch.full((4,), -2.0)
    assert hinge_d_loss(confident_real, confident_fake) == 0
    assert hinge_d_loss(torch.zeros(4), torch.zeros(4)) == 1
    assert hinge_d_loss(confident_fake, confident_real) == 3
    assert hinge_g_loss(confident_fake) == 2
    fake = clips.clone().requires_grad_()
    hinge_g_loss(disc(fake)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
