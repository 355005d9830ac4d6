"""kinema.diffusion.sampling against diffusers and against flows whose exact solution is known.

For Gaussian data x0 ~ N(m, s²) (independent per element) the rectified-flow velocity is closed-form,
v(x, σ) = −m + (σ − (1 − σ)s²) / ((1 − σ)²s² + σ²) · (x − (1 − σ)m), and the exact ODE carries the
noise z to m + s·z. So every sample's error is measurable, not only the distribution's.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from kinema.diffusion.flow import broadcast_sigma
from kinema.diffusion.sampling import (
    Guidance,
    ModelGuidance,
    ModelVelocity,
    make_noise,
    make_sigmas,
    sample,
)

MEAN = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1, 1)
STD = torch.tensor([0.3, 1.5, 0.1]).view(1, 3, 1, 1, 1)


def gaussian_velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact rectified-flow velocity for data N(MEAN, STD²) per channel."""
    s = broadcast_sigma(sigma, x).to(x.dtype)
    m, sd, a = MEAN.to(x.dtype), STD.to(x.dtype), 1 - s
    return -m + (s - a * sd**2) / (a**2 * sd**2 + s**2) * (x - a * m)


def point_velocity(point: torch.Tensor):
    """The exact velocity when all data is one point: a straight line from each noise to it."""

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return (x - point) / broadcast_sigma(sigma, x)

    return velocity


def noise64(batch: int = 64, frames: int = 2, seed: int = 0) -> torch.Tensor:
    """Float64 noise, so discretisation error is not hidden under rounding."""
    return make_noise((batch, 3, frames, 4, 4), seed, dtype=torch.float64)


def rms_error(steps: int, method: str, shift: float = 1.0) -> float:
    """Root-mean-square distance from the exact endpoint m + s·z after `steps` steps."""
    z = noise64()
    out = sample(gaussian_velocity, z, make_sigmas(steps, shift), method=method)
    return (out - (MEAN + STD * z)).square().mean().sqrt().item()


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_make_sigmas_equals_diffusers(shift):
    for steps in (1, 2, 4, 20, 50):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        scheduler.set_timesteps(steps)
        sigmas = make_sigmas(steps, shift)
        assert torch.equal(sigmas, scheduler.sigmas)
        assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and len(sigmas) == steps + 1
        assert bool((sigmas.diff() < 0).all())


def test_euler_matches_diffusers_step_by_step():
    """Wan's setting: 50 steps at shift 5, float32, the same velocity field on both sides."""
    scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    scheduler.set_timesteps(50)
    sigmas = make_sigmas(50, 5.0)
    theirs = ours = make_noise((2, 3, 2, 8, 8), seed=7)
    start, worst = ours, 0.0
    for i, t in enumerate(scheduler.timesteps):
        v = gaussian_velocity(theirs, scheduler.sigmas[i].expand(2))
        theirs = scheduler.step(v, t, theirs).prev_sample
        ours = sample(gaussian_velocity, ours, sigmas[i : i + 2])
        worst = max(worst, (ours - theirs).abs().max().item())
    assert worst <= 1e-6
    assert (sample(gaussian_velocity, start, sigmas) - theirs).abs().max().item() <= 1e-6


def test_single_point_data_is_a_straight_line():
    """Data on one point makes every path straight, so a single Euler step is already exact."""
    point = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1, 1)
    z = noise64()
    for method, steps in (("euler", 1), ("euler", 7), ("heun", 1), ("heun", 5)):
        out = sample(point_velocity(point), z, make_sigmas(steps, 3.0), method=method)
        assert (out - point).abs().max().item() < 1e-12


def test_a_clean_sample_model_samples_like_its_velocity():
    """x-prediction: a model that outputs the data point reaches it exactly, and guidance commutes."""
    point = torch.tensor([0.5, -2.0, 1.0]).view(1, 3, 1, 1, 1)
    other = torch.tensor([1.5, 0.0, -1.0]).view(1, 3, 1, 1, 1)
    text, mask = torch.zeros(2, 1, 8), torch.ones(2, 1, dtype=torch.bool)

    def oracle(target):
        return lambda latents, t, states, text_mask=None: target.expand_as(latents)

    z = make_noise((2, 3, 2, 4, 4), seed=0)
    for steps, method in ((1, "euler"), (6, "euler"), (4, "heun")):
        x = sample(
            ModelVelocity(oracle(point), text, mask, prediction="sample"), z, make_sigmas(steps, 3.0), method
        )
        assert (x - point).abs().max().item() < 1e-5
    pair = Guidance(
        ModelVelocity(oracle(point), text, mask, prediction="sample"),
        ModelVelocity(oracle(other), text, mask, prediction="sample"),
    )
    sigmas = make_sigmas(5, 3.0)
    # Guidance on velocities of x-predictions is guidance on the predictions: w·a + (1 − w)·b.
    x = sample(pair, z, sigmas, guidance=3.0)
    assert (x - (3.0 * point - 2.0 * other)).abs().max().item() < 1e-4


def test_gaussian_both_methods_converge_with_their_order():
    euler = {n: rms_error(n, "euler") for n in (16, 32, 64)}
    heun = {n: rms_error(n, "heun") for n in (16, 32, 64)}
    assert euler[64] < 0.02 and heun[64] < 2e-4
    for n in (16, 32):
        assert 0.85 < math.log2(euler[n] / euler[2 * n]) < 1.15  # first order
        assert 1.7 < math.log2(heun[n] / heun[2 * n]) < 2.3  # second order


def test_heun_beats_euler_at_equal_evaluations():
    """Heun with n steps costs 2n − 1 evaluations (Euler on the last step): give Euler as many steps."""
    for n in (4, 8, 16):
        assert rms_error(n, "heun", 1.0) < 0.6 * rms_error(2 * n - 1, "euler", 1.0)
    for n in (8, 16, 32):
        assert rms_error(n, "heun", 5.0) < 0.75 * rms_error(2 * n - 1, "euler", 5.0)
    # Not at very few evaluations: 2 Heun steps (3 evaluations) lose to 3 Euler steps.
    assert rms_error(2, "heun", 1.0) > rms_error(3, "euler", 1.0)


@pytest.mark.parametrize(("method", "steps"), [("euler", 200), ("heun", 50)])
def test_sampled_distribution_is_the_data_distribution(method, steps):
    """Enough steps turn N(0, 1) into N(m, s²) per channel, the narrow s = 0.1 channel included."""
    z = make_noise((1024, 3, 1, 4, 4), seed=1)
    out = sample(gaussian_velocity, z, make_sigmas(steps), method=method).transpose(0, 1).reshape(3, -1)
    mean, std = MEAN.flatten(), STD.flatten()
    assert ((out.mean(1) - mean).abs() < 4 * std / math.sqrt(out.shape[1])).all()
    assert ((out.std(1) / std - 1).abs() < 0.03).all()


def test_shift_spends_steps_at_high_noise():
    """Shift 5 leaves big steps near σ = 0 (0.114 → 0.024 → 0 at 50 steps), where narrow data is decided."""
    z = make_noise((1024, 3, 1, 4, 4), seed=2)
    narrow, wide = 2, 1
    std_error = {}
    for shift in (1.0, 5.0):
        out = sample(gaussian_velocity, z, make_sigmas(50, shift)).transpose(0, 1).reshape(3, -1)
        std_error[shift] = (out.std(1) / STD.flatten() - 1).abs()
        assert std_error[shift][wide] < 0.05
    assert std_error[5.0][narrow] > 2 * std_error[1.0][narrow]


def test_per_frame_schedule_equal_columns_match_shared_schedule():
    z, sigmas = noise64(batch=4, frames=3), make_sigmas(10, 3.0).double()
    shared = sample(gaussian_velocity, z, sigmas, method="heun")
    per_frame = sample(gaussian_velocity, z, sigmas[:, None, None].expand(-1, 4, 3), method="heun")
    assert torch.equal(shared, per_frame)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_diffusion_forcing_staggered_frames(method):
    """Each frame runs its own schedule: later frames start later and finish later, with equal results."""
    base, lag = make_sigmas(12, 3.0).double(), 4
    columns = [torch.cat([torch.ones(lag * f), base, torch.zeros(lag * (2 - f))]) for f in range(3)]
    sigmas = torch.stack(columns, dim=1)[:, None, :].expand(-1, 8, -1).double()
    z = noise64(batch=8, frames=3)
    staggered = sample(gaussian_velocity, z, sigmas, method=method)
    # The Gaussian field acts per element, so every frame must end where the plain schedule takes it.
    assert torch.equal(staggered, sample(gaussian_velocity, z, base, method=method))
    held = sample(gaussian_velocity, z, sigmas[: lag + 1], method=method)
    assert torch.equal(held[:, :, 1:], z[:, :, 1:])  # frames still at σ = 1 have not moved
    assert not torch.equal(held[:, :, 0], z[:, :, 0])


def test_reproducible_from_seeds():
    sigmas = make_sigmas(8, 3.0)
    a = sample(gaussian_velocity, make_noise((2, 3, 2, 4, 4), seed=5), sigmas, method="heun")
    b = sample(gaussian_velocity, make_noise((2, 3, 2, 4, 4), seed=5), sigmas, method="heun")
    assert torch.equal(a, b)
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(make_noise((2, 3), gen_a), make_noise((2, 3), gen_b))
    # One seed per sample: a sample's noise, hence its video, does not depend on its batch mates.
    pair, alone = make_noise((2, 3, 2, 4, 4), [11, 12]), make_noise((1, 3, 2, 4, 4), [12])
    assert torch.equal(pair[1:], alone)
    with pytest.raises(ValueError, match="seeds"):
        make_noise((3, 4), [1, 2])


def test_frame_correlated_noise_is_seeded_per_sample():
    shape = (3, 2, 5, 4, 4)
    batch = make_noise(shape, [7, 8, 9], frame_correlation=0.5)
    alone = make_noise((1, *shape[1:]), 8, frame_correlation=0.5)
    torch.testing.assert_close(batch[1:2], alone)
    torch.testing.assert_close(
        make_noise(shape, 7, frame_correlation=0.5), make_noise(shape, 7, frame_correlation=0.5)
    )
    assert batch.shape == shape and not torch.equal(
        make_noise(shape, 7), make_noise(shape, 7, frame_correlation=0.5)
    )
    big = make_noise((1, 1, 2, 256, 256), 0, frame_correlation=0.5).view(2, -1)
    assert abs(torch.corrcoef(big)[0, 1].item() - 0.5) < 0.02


def test_low_precision_noise_keeps_a_float32_state():
    z = make_noise((2, 3, 2, 4, 4), seed=3)
    seen: list[torch.dtype] = []

    def velocity(x, sigma):
        seen.append(x.dtype)
        return gaussian_velocity(x.float(), sigma).to(x.dtype)

    out = sample(velocity, z.bfloat16(), make_sigmas(20, 3.0))
    assert out.dtype == torch.bfloat16 and set(seen) == {torch.bfloat16}
    reference = sample(gaussian_velocity, z.bfloat16().float(), make_sigmas(20, 3.0))
    assert (out.float() - reference).abs().max() < 0.1


def test_guidance_one_is_conditional_only():
    calls = {"uncond": 0}

    def uncond(x, sigma):
        calls["uncond"] += 1
        return torch.zeros_like(x)

    z, sigmas = make_noise((2, 3, 2, 4, 4), seed=0), make_sigmas(6, 3.0)
    guided = sample(Guidance(gaussian_velocity, uncond), z, sigmas, method="heun", guidance=1.0)
    assert torch.equal(guided, sample(gaussian_velocity, z, sigmas, method="heun"))
    assert calls["uncond"] == 0


@pytest.mark.parametrize("w", [0.0, 2.0, 5.0])
def test_guidance_follows_the_formula(w):
    """Guiding point p_c against p_u gives the straight field to p_u + w (p_c − p_u): exact in any steps."""
    p_cond = torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1, 1)
    p_uncond = torch.tensor([0.2, 0.3, -0.5]).view(1, 3, 1, 1, 1)
    pair = Guidance(point_velocity(p_cond), point_velocity(p_uncond))
    z = make_noise((2, 3, 2, 4, 4), seed=0)
    sigma = torch.full((2,), 0.7)
    v_c, v_u = pair.both(z, sigma)
    assert torch.equal(v_c, point_velocity(p_cond)(z, sigma))
    assert torch.equal(v_u, point_velocity(p_uncond)(z, sigma))
    out = sample(pair, z, make_sigmas(10, 3.0), guidance=w)
    expected = (p_uncond + w * (p_cond - p_uncond)).expand_as(out)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_guidance_needs_an_unconditional_branch():
    with pytest.raises(TypeError, match="unconditional"):
        sample(gaussian_velocity, torch.zeros(1, 3, 1, 2, 2), make_sigmas(2), guidance=5.0)


class FakeDiT:
    """Stands in for the DiT: records its calls and mixes latents, timesteps, text and a kwarg."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, latents, timesteps, text_states, text_mask=None, image=None):
        self.calls.append({"batch": latents.shape[0], "t": timesteps, "text": tuple(text_states.shape)})
        pooled = (text_states * text_mask[..., None]).sum(1) / text_mask.sum(1, keepdim=True)
        shape = (-1, 1, 1, 1, 1)
        return latents * (timesteps / 1000).view(shape) + pooled.mean(-1).view(shape) + image.view(shape)


def test_model_guidance_batches_both_prompts_into_one_pass():
    gen = torch.Generator().manual_seed(0)
    cond, cond_mask = torch.randn(2, 5, 8, generator=gen), torch.tensor([[True] * 3 + [False] * 2] * 2)
    neg, neg_mask = torch.randn(1, 3, 8, generator=gen), torch.tensor([[True, True, False]])
    image = torch.tensor([0.5, -0.5])
    model = FakeDiT()
    batched = ModelGuidance(model, cond, cond_mask, neg, neg_mask, kwargs={"image": image})
    z, sigma = make_noise((2, 3, 2, 4, 4), seed=0), torch.tensor([0.9, 0.4])

    v_c, v_u = batched.both(z, sigma)
    assert len(model.calls) == 1 and model.calls[0]["batch"] == 4 and model.calls[0]["text"] == (4, 5, 8)
    torch.testing.assert_close(model.calls[0]["t"], torch.tensor([900.0, 400.0, 900.0, 400.0]))

    neg2, neg_mask2 = neg.expand(2, -1, -1), neg_mask.expand(2, -1)
    separate = Guidance(
        ModelVelocity(model, cond, cond_mask, {"image": image}),
        ModelVelocity(model, neg2, neg_mask2, {"image": image}),
    )
    s_c, s_u = separate.both(z, sigma)
    torch.testing.assert_close(v_c, s_c)
    torch.testing.assert_close(v_u, s_u)
    sigmas = make_sigmas(4, 3.0)
    torch.testing.assert_close(
        sample(batched, z, sigmas, guidance=5.0), sample(separate, z, sigmas, guidance=5.0)
    )
    model.calls.clear()
    sample(batched, z, sigmas, guidance=1.0)
    assert [c["batch"] for c in model.calls] == [2] * 4
    kw = {"image": image}
    x_batched = ModelGuidance(model, cond, cond_mask, neg, neg_mask, kw, prediction="sample")
    x_separate = Guidance(
        ModelVelocity(model, cond, cond_mask, kw, "sample"),
        ModelVelocity(model, neg2, neg_mask2, kw, "sample"),
    )
    for got, want in zip(x_batched.both(z, sigma), x_separate.both(z, sigma), strict=True):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(x_batched(z, sigma), x_separate(z, sigma))


def test_progress_bar_and_bad_arguments(capsys):
    z = torch.zeros(1, 3, 1, 2, 2)
    sample(gaussian_velocity, z, make_sigmas(3), progress=True)
    assert "sampling (euler)" in capsys.readouterr().err
    sample(gaussian_velocity, z, make_sigmas(3))
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="unknown method"):
        sample(gaussian_velocity, z, make_sigmas(3), method="rk4")
    with pytest.raises(ValueError, match="do not fit"):
        sample(gaussian_velocity, z, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 1"):
        make_sigmas(0)
