"""Streaming: chunk after chunk over the KV cache equals recomputing the context, in bounded memory."""

import dataclasses

import pytest
import torch

from kinema.diffusion.flow import previous_frames
from kinema.diffusion.sampling import ModelGuidance, ModelVelocity, make_sigmas, sample
from kinema.generate.pipeline import stack_previous_frame
from kinema.generate.stream import LatentStream, StreamSettings
from kinema.models.dit import DiTConfig, VideoDiT

TINY = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 4,
    "out_channels": 4,
    "text_dim": 24,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "rope_max_seq_len": 32,
}
B, SIZE, TEXT_LEN = 2, 8, 5


def tiny_dit(**overrides) -> VideoDiT:
    """A tiny random DiT with every weight perturbed, so no gate or norm is a harmless identity."""
    torch.manual_seed(0)
    model = VideoDiT(DiTConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def text() -> torch.Tensor:
    return torch.randn(B, TEXT_LEN, TINY["text_dim"], generator=torch.Generator().manual_seed(1))


def chunk_noise(count: int, frames: int, seed: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, 4, frames, SIZE, SIZE, generator=g) for _ in range(count)]


def run(stream: LatentStream, noises: list[torch.Tensor], actions: list | None = None) -> torch.Tensor:
    chunks = [stream.next_chunk(n, None if actions is None else actions[i]) for i, n in enumerate(noises)]
    return torch.cat(chunks, dim=2)


@pytest.mark.parametrize(
    ("chunk", "context_sigma", "num_actions"), [(1, 0.0, 0), (2, 0.0, 0), (1, 0.1, 3), (2, 0.25, 3)]
)
def test_the_cache_gives_what_recomputing_the_context_gives(chunk, context_sigma, num_actions):
    dit = tiny_dit(num_actions=num_actions)
    settings = StreamSettings(chunk_frames=chunk, steps=3, shift=2.0, context_sigma=context_sigma)
    noises = chunk_noise(4, chunk)
    g = torch.Generator().manual_seed(3)
    actions = [torch.randint(0, 3, (B, chunk), generator=g) for _ in noises] if num_actions else None
    cached = run(LatentStream(dit, text(), settings=settings), noises, actions)
    recomputed = run(LatentStream(dit, text(), settings=settings, recompute=True), noises, actions)
    assert cached.shape == (B, 4, 4 * chunk, SIZE, SIZE)
    assert (cached - recomputed).abs().max() <= 1e-4
    # The past matters: the same last noise after another past gives another chunk.
    other = run(
        LatentStream(dit, text(), settings=settings), chunk_noise(3, chunk, seed=9) + noises[3:], actions
    )
    assert (other[:, :, -chunk:] - cached[:, :, -chunk:]).abs().max() > 1e-3


@pytest.mark.parametrize("chunk", [1, 2])
def test_frame_stacking_gives_the_same_chunks_over_the_cache_as_recomputed(chunk):
    dit = tiny_dit(in_channels=8, condition_channels=4, num_actions=3)
    settings = StreamSettings(
        chunk_frames=chunk, steps=2, context_sigma=0.1, previous_frame=True, sink_frames=0
    )
    noises = chunk_noise(5, chunk)
    actions = [torch.full((B, chunk), i % 3) for i in range(5)]
    cached = run(LatentStream(dit, text(), settings=settings), noises, actions)
    recomputed = run(LatentStream(dit, text(), settings=settings, recompute=True), noises, actions)
    assert (cached - recomputed).abs().max() <= 1e-4
    # The condition is used: without the previous frames the chunks come out otherwise.
    unstacked = dataclasses.replace(settings, previous_frame=False)
    plain = run(LatentStream(dit, text(), settings=unstacked), noises, actions)
    assert (plain - cached).abs().max() > 1e-3


def test_a_stacked_streams_first_chunk_sees_its_frames_as_training_stacks_them():
    # A first-frame slot (mask + latent) that the stream leaves empty, then the previous frames.
    dit = tiny_dit(in_channels=13, condition_channels=9)
    settings = StreamSettings(chunk_frames=2, steps=2, previous_frame=True)
    noise = chunk_noise(1, 2)[0]
    streamed = LatentStream(dit, text(), settings=settings).next_chunk(noise)
    causal = {"attention": "block_causal", "chunk_frames": 2}
    empty = {"condition": noise.new_zeros(B, 5, 2, SIZE, SIZE), **causal}
    trained = sample(ModelVelocity(stack_previous_frame(dit), text(), None, empty), noise, make_sigmas(2))
    assert (streamed - trained).abs().max() <= 1e-5

    def previous_first(x, t, states, condition, **kwargs):
        return dit(x, t, states, condition=torch.cat([previous_frames(x), condition], dim=1), **kwargs)

    swapped = sample(ModelVelocity(previous_first, text(), None, empty), noise, make_sigmas(2))
    assert (streamed - swapped).abs().max() > 1e-3


def guided_stream(guidance: float, recompute: bool = False) -> LatentStream:
    """A stream over prompted text and a 3-token unconditional text, at guidance `guidance`."""
    mask = torch.ones(B, TEXT_LEN, dtype=torch.bool)
    uncond = (torch.randn(1, 3, TINY["text_dim"]), torch.ones(1, 3, dtype=torch.bool))
    settings = StreamSettings(chunk_frames=1, steps=3, shift=2.0, context_sigma=0.1, guidance=guidance)
    return LatentStream(tiny_dit(), text(), mask, settings=settings, recompute=recompute, uncond=uncond)


def test_guidance_mixes_the_two_branches_and_keeps_the_cache_equal_to_recomputing():
    torch.manual_seed(4)
    noises = chunk_noise(4, 1)
    cached = run(guided_stream(3.0), noises)
    torch.manual_seed(4)
    assert (cached - run(guided_stream(3.0, recompute=True), noises)).abs().max() <= 1e-4
    # With no past, the first chunk is plain guided sampling over the block-causal DiT.
    torch.manual_seed(4)
    stream = guided_stream(3.0)
    causal = {"attention": "block_causal", "chunk_frames": 1}
    velocity = ModelGuidance(stream.dit, stream.text_states, stream.text_mask, *stream.uncond, causal)
    first = sample(velocity, noises[0], make_sigmas(3, shift=2.0), guidance=3.0)
    assert (first - cached[:, :, :1]).abs().max() <= 1e-5
    # Guidance 1 is the prompted branch alone, and any other scale changes the stream.
    torch.manual_seed(4)
    plain = run(guided_stream(1.0), noises)
    settings = StreamSettings(chunk_frames=1, steps=3, shift=2.0, context_sigma=0.1)
    assert torch.equal(plain, run(LatentStream(tiny_dit(), text(), settings=settings), noises))
    assert (plain - cached).abs().max() > 1e-3
    with pytest.raises(ValueError, match="a guided stream needs the unconditional text"):
        LatentStream(tiny_dit(), text(), settings=StreamSettings(guidance=2.0))


def test_a_rolling_window_keeps_the_cache_bounded_far_past_the_rope_length():
    settings = StreamSettings(chunk_frames=1, steps=2, sink_frames=1, window_frames=4)
    stream = LatentStream(tiny_dit(), text(), settings=settings)
    sizes = []
    for noise in chunk_noise(60, 1):  # 60 frames, past rope_max_seq_len = 32
        assert stream.next_chunk(noise).isfinite().all()
        sizes.append(stream.cache.keys[0].shape[2])
    assert stream.frames_made == 60 and len(stream.cache) == 5
    assert stream.cache.positions == [0, 56, 57, 58, 59]
    assert max(sizes) == sizes[-1] == 5 * (SIZE // 2) ** 2  # 5 frames of 16 tokens, never more


def test_recompute_with_a_window_keeps_the_last_frames_only():
    settings = StreamSettings(chunk_frames=2, steps=1, sink_frames=0, window_frames=4)
    stream = LatentStream(tiny_dit(), text(), settings=settings, recompute=True)
    out = run(stream, chunk_noise(5, 2))
    assert out.isfinite().all() and sum(c.shape[2] for c in stream.context) == 4
    with pytest.raises(ValueError, match="recompute keeps a plain window; set sink_frames=0"):
        LatentStream(tiny_dit(), text(), settings=StreamSettings(window_frames=4), recompute=True)


def test_a_stream_is_seeded():
    settings = StreamSettings(chunk_frames=1, steps=2, context_sigma=0.2)
    a = run(LatentStream(tiny_dit(), text(), settings=settings, seed=5), chunk_noise(3, 1))
    b = run(LatentStream(tiny_dit(), text(), settings=settings, seed=5), chunk_noise(3, 1))
    c = run(LatentStream(tiny_dit(), text(), settings=settings, seed=6), chunk_noise(3, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)  # the seed draws the context's re-noising


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"chunk_frames": 0}, "chunk_frames and steps must be >= 1"),
        ({"steps": 0}, "chunk_frames and steps must be >= 1"),
        ({"context_sigma": 1.0}, r"context_sigma must be in \[0, 1\)"),
        ({"sampler": "ddim"}, "sampler must be one of"),
        ({"sink_frames": -1}, "sink_frames must be >= 0"),
        ({"guidance": -1.0}, "guidance must be >= 0"),
        ({"chunk_frames": 3, "window_frames": 2}, r"window_frames \(2\) must hold at least one chunk"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=f"stream settings: {message}"):
        StreamSettings(**settings)


def test_noise_of_the_wrong_shape_is_named():
    stream = LatentStream(tiny_dit(), text(), settings=StreamSettings(chunk_frames=2))
    with pytest.raises(ValueError, match=r"noise must be \(B, C, 2, H, W\) for chunks of 2 frames"):
        stream.next_chunk(torch.randn(B, 4, 1, SIZE, SIZE))
