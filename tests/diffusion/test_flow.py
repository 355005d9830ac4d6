"""kinema.diffusion.flow: shift, noise levels, noising, velocity target, loss and prompt dropout."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from kinema.diffusion.flow import (
    add_noise,
    as_velocity,
    broadcast_sigma,
    correlate_frames,
    drop_prompts,
    flow_loss,
    motion_weight,
    previous_frames,
    resolution_shift,
    sample_sigmas,
    shift_sigmas,
    velocity_target,
)


def test_shift_sigmas_matches_diffusers_training_grid():
    for shift in (1.0, 3.0, 5.0):
        grid = torch.linspace(1, 1000, 1000).flip(0) / 1000
        assert torch.equal(shift_sigmas(grid, shift), FlowMatchEulerDiscreteScheduler(shift=shift).sigmas)


def test_shift_sigmas_self_forcing_values_and_endpoints():
    """Self-Forcing's [1000, 750, 500, 250] at shift 5 become σ' = 5σ / (1 + 4σ)."""
    sigma = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    expected = torch.tensor([1.0, 3.75 / 4, 2.5 / 3, 1.25 / 2, 0.0])
    torch.testing.assert_close(shift_sigmas(sigma, 5.0), expected)
    assert torch.equal(shift_sigmas(sigma, 1.0), sigma)
    assert shift_sigmas(0.5, 3.0) == pytest.approx(0.75)


def test_resolution_shift_anchors():
    tiny = 5 * (64 // 8 // 2) ** 2  # 64×64, 17 frames, 8× VAE, 2×2 patches: 80 tokens
    assert resolution_shift(tiny) == 1.0
    assert resolution_shift(21 * 1560) == pytest.approx(3.0)  # Wan 480p
    assert resolution_shift(21 * 45 * 80) == 5.0  # Wan 720p
    assert resolution_shift(10**7) == 5.0
    counts = [256, 1000, 4000, 16000, 40000, 65264]
    shifts = [resolution_shift(n) for n in counts]
    assert shifts == sorted(shifts) and shifts[0] == 1.0 and shifts[-1] == 5.0
    assert resolution_shift(1000, base_tokens=1000, base_shift=2.0, max_tokens=2000, max_shift=4.0) == 2.0
    with pytest.raises(ValueError, match="max_tokens"):
        resolution_shift(100, base_tokens=500, max_tokens=500)


def test_sample_sigmas_logit_normal_seeded_and_per_frame():
    draw = sample_sigmas((20000,), torch.Generator().manual_seed(0), mean=0.5, std=0.8)
    assert torch.equal(draw, sample_sigmas((20000,), torch.Generator().manual_seed(0), mean=0.5, std=0.8))
    assert draw.min() > 0 and draw.max() < 1
    logits = torch.logit(draw.double())
    assert logits.mean().item() == pytest.approx(0.5, abs=0.03)
    assert logits.std().item() == pytest.approx(0.8, abs=0.03)

    frames = sample_sigmas((4000, 5), torch.Generator().manual_seed(1))
    assert frames.shape == (4000, 5)
    corr = torch.corrcoef(frames.T)
    assert (corr - torch.eye(5)).abs().max() < 0.06  # every frame draws its own level


def test_sample_sigmas_shift_moves_the_median():
    shifted = sample_sigmas((20000,), torch.Generator().manual_seed(2), shift=3.0)
    assert shifted.median().item() == pytest.approx(0.75, abs=0.02)  # shift(0.5, 3)


def test_add_noise_endpoints_and_velocity_is_the_derivative():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 5, 5, generator=gen), torch.randn(2, 4, 3, 5, 5, generator=gen)
    assert torch.equal(add_noise(x0, noise, torch.zeros(2)), x0)
    assert torch.equal(add_noise(x0, noise, torch.ones(2)), noise)
    sigma, h = torch.tensor([0.3, 0.8]), 1e-3
    slope = (add_noise(x0, noise, sigma + h) - add_noise(x0, noise, sigma)) / h
    torch.testing.assert_close(slope, velocity_target(x0, noise), atol=2e-3, rtol=0)


def test_add_noise_per_frame():
    x0, noise = torch.zeros(2, 4, 3, 2, 2), torch.ones(2, 4, 3, 2, 2)
    sigma = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.25, 0.75]])
    noisy = add_noise(x0, noise, sigma)
    assert torch.equal(noisy[:, 0, :, 0, 0], sigma)
    assert torch.equal(noisy.amin(dim=(1, 3, 4)), noisy.amax(dim=(1, 3, 4)))


def test_broadcast_sigma_rejects_mismatched_shapes():
    x = torch.zeros(2, 4, 3, 2, 2)
    assert broadcast_sigma(0.5, x).ndim == 0
    with pytest.raises(ValueError, match="does not fit"):
        broadcast_sigma(torch.zeros(3), x)
    with pytest.raises(ValueError, match="does not fit"):
        broadcast_sigma(torch.zeros(2, 5), x)


def test_flow_loss_is_velocity_mse():
    gen = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(2, 4, 3, 5, 5, generator=gen) for _ in range(3))
    assert flow_loss(noise - x0, x0, noise).item() == 0.0
    expected = torch.nn.functional.mse_loss(pred, noise - x0)
    torch.testing.assert_close(flow_loss(pred, x0, noise), expected)
    per_sample = (pred - (noise - x0)).square().mean(dim=(1, 2, 3, 4))
    weighted = flow_loss(pred, x0, noise, weight=torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(weighted, per_sample[0])  # 2 · e0 / 2 samples


def test_flow_loss_mask_ignores_masked_frames_and_keeps_gradient():
    gen = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 4, 3, 5, 5, generator=gen), torch.randn(2, 4, 3, 5, 5, generator=gen)
    pred = torch.randn(2, 4, 3, 5, 5, generator=gen, requires_grad=True)
    mask = torch.tensor([[False, True, True], [True, True, False]])
    loss = flow_loss(pred, x0, noise, mask=mask)
    err = (pred - (noise - x0)).square().detach()
    kept = torch.cat([err[0, :, 1:].flatten(), err[1, :, :2].flatten()])
    torch.testing.assert_close(loss.detach(), kept.mean())
    loss.backward()
    assert (pred.grad[0, :, 0] == 0).all() and (pred.grad[1, :, 2] == 0).all()
    assert (pred.grad[0, :, 1:] != 0).any()

    changed = pred.detach().clone()
    changed[0, :, 0] += 100.0
    torch.testing.assert_close(flow_loss(changed, x0, noise, mask=mask), loss.detach())
    none = flow_loss(pred, x0, noise, mask=torch.zeros(2, 3, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad


def text_batch(batch: int, length: int = 6, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Random text states with a mask whose first 3 tokens are real."""
    states = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(batch))
    mask = torch.zeros(batch, length, dtype=torch.bool)
    mask[:, :3] = True
    return states, mask


def test_drop_prompts_rate_and_rows():
    states, mask = text_batch(4000)
    null_states, null_mask = torch.full((1, 2, 8), 7.0), torch.tensor([[True, False]])
    gen = torch.Generator().manual_seed(0)
    out_states, out_mask = drop_prompts(states, mask, null_states, null_mask, generator=gen)
    assert out_states.shape == states.shape and out_mask.shape == mask.shape
    # The 2-token empty prompt is padded to the batch's 6 tokens with zeros.
    dropped = (out_states[:, :2] == 7.0).all(dim=(1, 2)) & (out_states[:, 2:] == 0).all(dim=(1, 2))
    kept = (out_states == states).all(dim=(1, 2))
    assert bool((dropped ^ kept).all())  # each row is its prompt or the empty prompt, never a mix
    assert dropped.float().mean().item() == pytest.approx(0.1, abs=0.015)
    assert torch.equal(out_mask[dropped], torch.tensor([True] + [False] * 5).expand(int(dropped.sum()), -1))
    assert torch.equal(out_mask[kept], mask[kept])


def test_drop_prompts_edges_and_seed():
    states, mask = text_batch(16)
    null_states, null_mask = torch.zeros(3, 8), torch.tensor([True, True, False])
    same = drop_prompts(states, mask, null_states, null_mask, p=0.0)
    assert torch.equal(same[0], states) and torch.equal(same[1], mask)
    all_null = drop_prompts(states, mask, null_states, null_mask, p=1.0)
    assert (all_null[0] == 0).all() and all_null[1][:, :2].all() and not all_null[1][:, 2:].any()
    a = drop_prompts(states, mask, null_states, null_mask, p=0.5, generator=torch.Generator().manual_seed(3))
    b = drop_prompts(states, mask, null_states, null_mask, p=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_predicted_clean_sample_gives_the_velocity():
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 3, 5, 5, generator=gen), torch.randn(2, 4, 3, 5, 5, generator=gen)
    sigma = torch.tensor([[0.9, 0.5, 0.2], [0.7, 0.3, 0.06]])  # per frame, all above the bound
    x = add_noise(x0, noise, sigma)
    torch.testing.assert_close(as_velocity(x0, x, sigma, "sample", 0.05), noise - x0, rtol=1e-5, atol=1e-5)
    assert as_velocity(x0, x, sigma, "velocity", 0.05) is x0
    near_clean = torch.tensor([0.01, 0.5])  # below the bound the division stops at min_sigma
    x = add_noise(x0, noise, near_clean)
    bounded = as_velocity(x0, x, near_clean, "sample", 0.05)
    torch.testing.assert_close(bounded[0], (noise - x0)[0] * 0.01 / 0.05)
    with pytest.raises(ValueError, match="prediction must be one of"):
        as_velocity(x0, x, near_clean, "epsilon", 0.05)


def test_correlated_frames_keep_unit_variance_and_share_the_asked_fraction():
    gen = torch.Generator().manual_seed(0)
    noise, shared = torch.randn(4000, 2, 3, 4, 4, generator=gen), torch.randn(4000, 2, 1, 4, 4, generator=gen)
    mixed = correlate_frames(noise, shared, 0.6)
    assert abs(mixed.var().item() - 1.0) < 0.02
    frames = mixed.transpose(0, 2).flatten(1)  # (F, everything else)
    correlation = torch.corrcoef(frames)
    assert torch.allclose(correlation[~torch.eye(3, dtype=torch.bool)], torch.tensor(0.6), atol=0.02)
    assert correlate_frames(noise, shared, 0.0) is noise
    with pytest.raises(ValueError, match=r"frame noise correlation must be in \[0, 1\), got 1.0"):
        correlate_frames(noise, shared, 1.0)


def test_motion_weight_picks_out_what_moved_since_the_frame_before():
    x0 = torch.zeros(2, 4, 3, 2, 2)
    x0[:, :, 2, 0, 0] = 0.5  # one latent pixel changes in the last frame
    before = torch.zeros(2, 4, 1, 2, 2)
    before[:, :, 0, 1, 1] = 3.0  # and one differs between the frame before the window and its first
    weight = motion_weight(x0, 10.0, before, has_before=torch.tensor([True, False]))
    assert weight.shape == x0.shape
    assert torch.allclose(weight[:, :, 2, 0, 0], torch.tensor(6.0))  # 1 + 10 * 0.5
    assert weight[0, :, 0, 1, 1].eq(11.0).all()  # the change is capped at 1
    assert weight[1, :, 0].eq(1.0).all()  # a clip's first frame has nothing to compare with
    assert weight[:, :, 1].eq(1.0).all() and weight[:, :, 2, 1, 1].eq(1.0).all()


def test_motion_weight_without_a_frame_before_counts_the_first_frame_as_still():
    x0 = torch.randn(2, 4, 3, 2, 2)
    weight = motion_weight(x0, 5.0)
    assert weight[:, :, 0].eq(1.0).all()
    change = (x0[:, :, 1:] - x0[:, :, :-1]).abs().mean(1, keepdim=True).clamp(max=1.0)
    torch.testing.assert_close(weight[:, :, 1:], (1 + 5.0 * change).expand(-1, 4, -1, -1, -1))
    assert (
        torch.equal(previous_frames(x0)[:, :, 1:], x0[:, :, :-1]) and not previous_frames(x0)[:, :, 0].any()
    )
