"""VAE training losses that need no downloaded weights: L1, an FFT-magnitude term, KL, and a PatchGAN.

Why the frequency term: pixel L1 charges a blurred edge about as much as a slight brightness error of
the same size, so an L1-trained VAE settles for blur. Blur removes high-frequency energy, which the
per-frame spectrum magnitude shows at once, so `frequency_loss` penalises it where L1 barely does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kinema.models.vae import DiagonalGaussian


def frequency_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |(|FFT(recon)| - |FFT(target)|)| over the 2D (orthonormal) spectrum of every frame and channel."""
    spectrum_recon = torch.fft.rfft2(recon.float(), norm="ortho").abs()
    spectrum_target = torch.fft.rfft2(target.float(), norm="ortho").abs()
    return (spectrum_recon - spectrum_target).abs().mean()


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    posterior: DiagonalGaussian,
    kl_weight: float = 1e-6,
    freq_weight: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 + freq_weight * frequency + kl_weight * KL, and the detached parts for logging.

    KL is summed over a sample's latents and divided by its number of pixel values, so `kl_weight`
    means what it does in the usual summed VAE losses (1e-6 is a common choice).
    """
    l1 = (recon.float() - target.float()).abs().mean()
    freq = frequency_loss(recon, target) if freq_weight else l1.new_zeros(())
    kl = posterior.kl().mean() / target[0].numel()
    loss = l1 + freq_weight * freq + kl_weight * kl
    parts = {"loss": loss, "l1": l1, "freq": freq, "kl": kl}
    return loss, {name: value.detach() for name, value in parts.items()}


class PatchDiscriminator(nn.Module):
    """A small 2D PatchGAN run on every frame: one real/fake logit per overlapping patch."""

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 3):
        super().__init__()
        modules: list[nn.Module] = [
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        width = channels
        for _ in range(layers - 1):
            modules += [
                nn.Conv2d(width, width * 2, 4, stride=2, padding=1),
                nn.GroupNorm(8, width * 2),
                nn.LeakyReLU(0.2),
            ]
            width *= 2
        modules.append(nn.Conv2d(width, 1, 3, padding=1))
        self.net = nn.Sequential(*modules)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) video or (B, C, H, W) images -> (B * T, 1, H / 2^layers, W / 2^layers) logits."""
        if video.ndim == 5:
            video = video.transpose(1, 2).flatten(0, 1)
        return self.net(video)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: zero once real logits are >= 1 and fake ones <= -1."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator (VAE decoder) hinge loss: raise the discriminator's logits on reconstructions."""
    return -fake_logits.mean()
