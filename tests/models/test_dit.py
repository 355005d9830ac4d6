"""VideoDiT: parity with diffusers' Wan transformer, masks, per-frame time, KV cache, loading and errors."""

import json

import pytest
import torch
from diffusers import WanTransformer3DModel

import kinema.models.dit as dit
from kinema.errors import ConfigError
from kinema.models.dit import DiTConfig, KVCache, VideoDiT

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
B, FRAMES, SIZE, TEXT_LEN = 2, 4, 8, 7


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Add noise to every parameter, so no norm weight is a harmless 1 and no gate a harmless 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


def _tiny(seed: int = 0, **overrides) -> VideoDiT:
    """A tiny random VideoDiT."""
    torch.manual_seed(seed)
    return _perturb(VideoDiT(DiTConfig(**{**TINY, **overrides})), seed)


def _inputs(seed: int = 0, frames: int = FRAMES, channels: int = 4):
    """Latents, (B,) timesteps and text states."""
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(B, channels, frames, SIZE, SIZE, generator=g)
    text = torch.randn(B, TEXT_LEN, TINY["text_dim"], generator=g)
    return latents, torch.tensor([150.0, 820.0]), text


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def reference() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return _perturb(WanTransformer3DModel(**TINY), 1)


@pytest.fixture(scope="module")
def model(reference) -> VideoDiT:
    ours = VideoDiT(DiTConfig(**TINY)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return ours


@torch.no_grad()
def test_matches_diffusers(reference, model):
    latents, t, text = _inputs()
    expected = reference(latents, t, text, return_dict=False)[0]
    got = model(latents, t, text)
    assert got.shape == (B, 4, FRAMES, SIZE, SIZE)
    assert _max_diff(got, expected) <= 1e-5, _max_diff(got, expected)
    assert expected.abs().max() > 0.1  # a dead network would match trivially


@pytest.mark.parametrize("sharded", [False, True])
@torch.no_grad()
def test_loads_a_diffusers_folder(tmp_path, reference, sharded):
    reference.save_pretrained(tmp_path, max_shard_size="20KB" if sharded else "10GB")
    assert (tmp_path / "diffusion_pytorch_model.safetensors.index.json").is_file() == sharded
    assert "_class_name" in json.loads((tmp_path / "config.json").read_text())
    loaded = VideoDiT.from_pretrained(tmp_path)
    latents, t, text = _inputs(1)
    expected = reference(latents, t, text, return_dict=False)[0]
    assert _max_diff(loaded(latents, t, text), expected) <= 1e-5


@torch.no_grad()
def test_save_and_load_round_trip(tmp_path):
    model = _tiny(num_actions=3, in_channels=6, condition_channels=2)
    model.save_pretrained(tmp_path / "m")
    loaded = VideoDiT.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    latents, t, text = _inputs()
    kw = {"condition": torch.randn(B, 2, FRAMES, SIZE, SIZE), "actions": torch.randint(0, 3, (B, FRAMES))}
    assert torch.equal(loaded(latents, t, text, **kw), model(latents, t, text, **kw))


def test_config_keys_are_checked(tmp_path, model):
    folder = model.save_pretrained(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_note": "ignored", "_diffusers_version": "x"}))
    VideoDiT.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "window_size": [-1, -1]}))
    with pytest.raises(ConfigError, match="window_size"):
        VideoDiT.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "image_dim": 1280}))
    with pytest.raises(ConfigError, match="image_dim"):
        VideoDiT.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "num_layers": 3}))
    with pytest.raises(ConfigError, match=r"missing \['blocks\.2"):
        VideoDiT.from_pretrained(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no weights"):
        VideoDiT.from_pretrained(folder)


@torch.no_grad()
def test_equal_per_frame_timesteps_equal_batch_timesteps(model):
    latents, t, text = _inputs()
    per_frame = t[:, None].expand(B, FRAMES)
    assert _max_diff(model(latents, per_frame, text), model(latents, t, text)) <= 1e-5
    assert _max_diff(model(latents, 500.0, text), model(latents, torch.full((B,), 500.0), text)) <= 1e-5


@torch.no_grad()
def test_a_frames_timestep_only_reaches_later_frames_when_causal(model):
    latents, _, text = _inputs()
    t1 = torch.tensor([[100.0, 300.0, 500.0, 700.0]] * B)
    t2 = t1.clone()
    t2[:, 3] = 50.0
    kw = {"attention": "block_causal", "chunk_frames": 1}
    a, b = model(latents, t1, text, **kw), model(latents, t2, text, **kw)
    assert _max_diff(a[:, :, :3], b[:, :, :3]) <= 1e-6
    assert _max_diff(a[:, :, 3], b[:, :, 3]) > 1e-3
    # Bidirectionally, frame 3's time does reach frame 0: the check above could fail.
    a, b = model(latents, t1, text), model(latents, t2, text)
    assert _max_diff(a[:, :, 0], b[:, :, 0]) > 1e-4


@torch.no_grad()
def test_block_causal_earlier_chunks_ignore_later_frames(model):
    latents, t, text = _inputs()
    later = latents.clone()
    later[:, :, 2:] += torch.randn_like(later[:, :, 2:])
    kw = {"attention": "block_causal", "chunk_frames": 2}
    a, b = model(latents, t, text, **kw), model(later, t, text, **kw)
    assert _max_diff(a[:, :, :2], b[:, :, :2]) <= 1e-6
    assert _max_diff(a[:, :, 2:], b[:, :, 2:]) > 1e-3
    a, b = model(latents, t, text), model(later, t, text)
    assert _max_diff(a[:, :, :2], b[:, :, :2]) > 1e-4


@torch.no_grad()
def test_one_chunk_is_bidirectional(model):
    latents, t, text = _inputs()
    full = model(latents, t, text)
    for chunk in (FRAMES, FRAMES + 3):
        causal = model(latents, t, text, attention="block_causal", chunk_frames=chunk)
        assert _max_diff(causal, full) <= 1e-6
    assert _max_diff(model(latents, t, text, attention="block_causal", chunk_frames=2), full) > 1e-4


@pytest.mark.parametrize("chunk", [1, 2])
@torch.no_grad()
def test_streaming_with_the_cache_matches_the_full_causal_pass(model, chunk):
    latents, _, text = _inputs(frames=6)
    t = torch.linspace(0, 1000, B * 6).reshape(B, 6)
    full = model(latents, t, text, attention="block_causal", chunk_frames=chunk)
    cache = model.new_cache()
    outs = []
    for s in range(0, 6, chunk):
        kw = {"attention": "block_causal", "chunk_frames": chunk, "cache": cache}
        part, tp = latents[:, :, s : s + chunk], t[:, s : s + chunk]
        model(torch.randn_like(part), tp, text, **kw)  # a denoising step: reads the cache, leaves it
        assert len(cache) == s and cache.next_frame == s
        denoise = model(part, tp, text, **kw)
        outs.append(model(part, tp, text, **kw, update_cache=True))
        assert torch.equal(denoise, outs[-1])
        assert len(cache) == s + chunk and cache.positions == list(range(s + chunk))
    assert _max_diff(torch.cat(outs, dim=2), full) <= 1e-5, _max_diff(torch.cat(outs, dim=2), full)
    assert cache.keys[0].shape == (B, 2, 6 * 16, 16)  # (B, heads, frames × tokens per frame, head_dim)


@torch.no_grad()
def test_patch_context_lets_a_token_see_its_neighbours_and_still_streams():
    plain, seeing = _tiny(), _tiny(patch_context=2)
    assert seeing.patch_embedding.weight.shape[2:] == (1, 6, 6)
    latents, t, text = _inputs(frames=3)
    nudged = latents.clone()
    nudged[..., :, 2:4] += 1.0  # the second column of 2x2 patches
    for model, sees in ((plain, False), (seeing, True)):
        first = model.patch_embedding(latents)[..., 0], model.patch_embedding(nudged)[..., 0]
        assert (_max_diff(*first) > 1e-4) == sees, "the first column sees the second only with context"
    full = seeing(latents, t, text, attention="block_causal", chunk_frames=1)
    cache = seeing.new_cache()
    outs = [
        seeing(latents[:, :, s : s + 1], t, text, cache=cache, update_cache=True, attention="block_causal")
        for s in range(3)
    ]
    assert _max_diff(torch.cat(outs, dim=2), full) <= 1e-5


@torch.no_grad()
def test_cache_trim_keeps_the_sink_and_the_window(model):
    latents, t, text = _inputs(frames=5)
    cache = model.new_cache()
    for s in range(5):
        model(latents[:, :, s : s + 1], t, text, cache=cache, update_cache=True)
    keys = cache.keys[1].clone()
    cache.trim(keep_first=3, keep_last=2)  # nothing to drop
    assert len(cache) == 5
    cache.trim(keep_first=1, keep_last=2)
    assert len(cache) == 3 and cache.positions == [0, 3, 4] and cache.next_frame == 5
    assert torch.equal(cache.keys[1], torch.cat([keys[:, :, :16], keys[:, :, 48:]], dim=2))
    out = model(latents[:, :, :1], t, text, cache=cache, update_cache=True)
    assert out.isfinite().all() and cache.positions == [0, 3, 4, 5]
    with pytest.raises(ValueError, match="inside the cache"):
        model(latents[:, :, :1], t, text, cache=cache, start_frame=2)
    with pytest.raises(ValueError, match="tokens per frame"):
        model(latents[:, :, :1, :4], t, text, cache=cache)
    cache.clear()
    assert len(cache) == 0 and cache.text_kv is None and cache.next_frame == 0


@torch.no_grad()
def test_rope_works_past_rope_max_seq_len(model):
    latents, t, text = _inputs(frames=2)
    # RoPE is relative: shifting every frame far past rope_max_seq_len (32) changes nothing...
    assert _max_diff(model(latents, t, text, start_frame=1000), model(latents, t, text)) <= 1e-4
    # ...while the distance to cached frames does matter.
    outs = []
    for start in (1, 1000):
        cache = model.new_cache()
        model(latents[:, :, :1], t, text, cache=cache, update_cache=True)
        outs.append(model(latents[:, :, 1:], t, text, cache=cache, start_frame=start))
    assert _max_diff(*outs) > 1e-4


def test_actions_modulate_and_learn():
    model = _tiny(num_actions=3)
    latents, t, text = _inputs()
    actions = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    other = actions.clone()
    other[:, 3] = 1
    with torch.no_grad():
        kw = {"attention": "block_causal", "chunk_frames": 1}
        a, b = model(latents, t, text, actions=actions, **kw), model(latents, t, text, actions=other, **kw)
    assert _max_diff(a[:, :, :3], b[:, :, :3]) <= 1e-6 and _max_diff(a[:, :, 3], b[:, :, 3]) > 1e-3
    fresh = VideoDiT(DiTConfig(**TINY, num_actions=3))
    rows = fresh.action_embedder.weight.detach()
    assert torch.cdist(rows, rows)[~torch.eye(3, dtype=torch.bool)].min() > 0.5, "keys differ from the start"
    fresh(latents, t, text, actions=actions).square().mean().backward()
    assert fresh.action_embedder.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"actions must lie in \[0, 3\)"):
        model(latents, t, text, actions=actions + 1)


def test_frame_positions_tell_a_frame_its_index_and_still_stream():
    plain, placed = _tiny(), _tiny(frame_positions=6)
    latents, t, text = _inputs(frames=3)
    with torch.no_grad():
        for model, knows in ((plain, False), (placed, True)):
            # One frame alone sees only relative positions, so without the embedding its index is invisible.
            early, late = (model(latents[:, :, :1], t, text, start_frame=s) for s in (0, 3))
            assert (_max_diff(early, late) > 1e-3) == knows
        full = placed(latents, t, text, attention="block_causal", chunk_frames=1)
        cache = placed.new_cache()
        outs = [placed(latents[:, :, s : s + 1], t, text, cache=cache, update_cache=True) for s in range(3)]
        assert _max_diff(torch.cat(outs, dim=2), full) <= 1e-5
        with pytest.raises(
            ValueError, match=r"latent frames 4..6 reach past .* 6 positions \(dit.frame_positions\)"
        ):
            placed(latents, t, text, start_frame=4)
    placed(latents, t, text).square().mean().backward()
    assert (
        placed.frame_embedder.weight.grad[:3].abs().sum() > 0
        and not placed.frame_embedder.weight.grad[3:].any()
    )


@torch.no_grad()
def test_condition_channels_are_concatenated():
    with_condition = _tiny(in_channels=6, condition_channels=2)
    plain = VideoDiT(DiTConfig(**{**TINY, "in_channels": 6})).eval()
    plain.load_state_dict(with_condition.state_dict())
    latents, t, text = _inputs()
    condition = torch.randn(B, 2, FRAMES, SIZE, SIZE)
    got = with_condition(latents, t, text, condition=condition)
    assert _max_diff(got, plain(torch.cat([latents, condition], 1), t, text)) <= 1e-6
    with pytest.raises(ValueError, match="condition must be given"):
        with_condition(latents, t, text)


@torch.no_grad()
def test_new_actions_and_condition_channels_start_at_zero(tmp_path, model):
    model.save_pretrained(tmp_path / "t2v")
    grown = VideoDiT.from_pretrained(tmp_path / "t2v", num_actions=5, in_channels=6, condition_channels=2)
    latents, t, text = _inputs()
    kw = {"condition": torch.randn(B, 2, FRAMES, SIZE, SIZE), "actions": torch.randint(0, 5, (B, FRAMES))}
    assert _max_diff(grown(latents, t, text, **kw), model(latents, t, text)) <= 1e-5


@torch.no_grad()
def test_a_gained_frame_table_starts_near_as_saved_but_tells_frames_apart(tmp_path, model):
    model.save_pretrained(tmp_path / "t2v")
    grown = VideoDiT.from_pretrained(tmp_path / "t2v", frame_positions=FRAMES)
    latents, t, text = _inputs()
    fresh = VideoDiT.from_pretrained(tmp_path / "t2v", frame_positions=FRAMES)
    torch.nn.init.normal_(fresh.frame_embedder.weight, std=0.2)  # as a model built with the table
    before = model(latents, t, text)
    change = _max_diff(grown(latents, t, text), before)
    assert 0 < change < 0.5 * _max_diff(fresh(latents, t, text), before)
    # Not zeros: a frame and its mirror must start apart, or a time-symmetric model keeps them alike.
    table = grown.frame_embedder.weight
    assert (table - table.flip(0)).abs().max() > 1e-2
    assert table.square().mean().sqrt().item() == pytest.approx(0.1, rel=1e-3)


@torch.no_grad()
def test_text_mask_hides_padding(model):
    latents, t, text = _inputs()
    mask = torch.ones(B, TEXT_LEN, dtype=torch.bool)
    mask[0, 4:] = False
    changed = text.clone()
    changed[0, 4:] += 3.0
    masked = model(latents, t, text, text_mask=mask)
    assert _max_diff(masked, model(latents, t, changed, text_mask=mask)) <= 1e-6
    assert _max_diff(model(latents, t, text), model(latents, t, changed)) > 1e-3
    cache = model.new_cache()  # the cache keeps the mask with the prompt's K/V
    assert _max_diff(model(latents, t, text, text_mask=mask, cache=cache), masked) <= 1e-5
    assert _max_diff(model(latents, t, text, cache=cache), masked) <= 1e-5
    mask[1] = False
    with pytest.raises(ValueError, match="every text token"):
        model(latents, t, text, text_mask=mask)


def test_gradient_checkpointing_gives_the_same_gradients(monkeypatch):
    model = _tiny(num_actions=3).train()
    latents, _, text = _inputs()
    t = torch.tensor([[10.0, 200.0, 400.0, 900.0]] * B)
    actions = torch.randint(0, 3, (B, FRAMES))

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        out = model(latents, t, text, actions=actions, attention="block_causal", chunk_frames=2)
        out.square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    calls = []
    real = dit.checkpoint
    monkeypatch.setattr(dit, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model.gradient_checkpointing = True
    checkpointed = grads()
    assert len(calls) == TINY["num_layers"]
    for name, g in plain.items():
        assert torch.allclose(checkpointed[name], g, atol=1e-6), name
    assert plain["blocks.0.attn1.to_q.weight"].abs().sum() > 0


@torch.no_grad()
def test_bf16_runs_close_to_fp32(model):
    latents, t, text = _inputs()
    full = model(latents, t, text)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = model(latents, t, text, attention="block_causal", chunk_frames=4)
    assert _max_diff(auto.float(), full) / full.abs().max() < 0.05
    bf16 = VideoDiT(model.config).eval()
    bf16.load_state_dict(model.state_dict())
    out = bf16.to(torch.bfloat16)(latents.bfloat16(), t, text.bfloat16())
    assert out.dtype == torch.bfloat16 and _max_diff(out.float(), full) / full.abs().max() < 0.05


@torch.no_grad()
def test_a_time_patch_matches_diffusers():
    torch.manual_seed(0)
    reference = _perturb(WanTransformer3DModel(**{**TINY, "patch_size": (2, 2, 2)}), 1)
    ours = VideoDiT(DiTConfig(**{**TINY, "patch_size": (2, 2, 2)})).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    latents, t, text = _inputs()
    expected = reference(latents, t, text, return_dict=False)[0]
    assert _max_diff(ours(latents, t, text), expected) <= 1e-5


@torch.no_grad()
@pytest.mark.parametrize(("frames", "token_frames"), [(1, 1), (5, 2), (9, 3)])
def test_the_first_frame_fills_a_time_patch_alone(frames, token_frames):
    model = _tiny(patch_size=(4, 2, 2), in_channels=5, condition_channels=1)
    latents, _, text = _inputs(frames=frames)
    condition = torch.randn(B, 1, frames, SIZE, SIZE)
    per_frame = torch.rand(B, token_frames) * 1000
    out = model(latents, per_frame, text, condition=condition)
    assert out.shape == latents.shape

    # The same as repeating frame 0 by hand to fill its group, then cropping the repeats.
    def fill(x):
        return torch.cat([x[:, :, :1].expand(-1, -1, 3, -1, -1), x], dim=2)

    filled = model(fill(latents), per_frame, text, condition=fill(condition))
    assert _max_diff(out, filled[:, :, 3:]) <= 1e-6
    if frames > 1:  # frames 1-4 share a token frame, which frame 0 does not see in block-causal mode
        causal = model(latents, per_frame, text, condition=condition, attention="block_causal")
        bumped = latents.clone()
        bumped[:, :, 1] += 1.0
        changed = model(bumped, per_frame, text, condition=condition, attention="block_causal")
        assert _max_diff(changed[:, :, :1], causal[:, :, :1]) == 0
        assert _max_diff(changed[:, :, 1:5], causal[:, :, 1:5]) > 1e-3


def test_later_chunks_must_fill_their_time_patches():
    model = _tiny(patch_size=(4, 2, 2))
    latents, t, text = _inputs(frames=3)
    with pytest.raises(
        ValueError, match="3 latent frames after the start must be a multiple of the time patch 4"
    ):
        model(latents, t, text, start_frame=2)


def _bad(**change):
    latents, t, text = _inputs()
    return {"latents": latents, "timesteps": t, "text_states": text, **change}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (_bad(latents=torch.randn(B, 4, SIZE, SIZE)), r"latents must be \(B, C, F, H, W\)"),
        (_bad(latents=torch.randn(B, 5, FRAMES, SIZE, SIZE)), "latents have 5 channels, the model takes 4"),
        (
            _bad(latents=torch.randn(B, 4, FRAMES, 7, SIZE)),
            r"H×W = 7×8 is not divisible by the patch's \(2, 2\)",
        ),
        (_bad(timesteps=torch.zeros(B, FRAMES + 1)), r"timesteps must be \(B,\)"),
        (_bad(timesteps=torch.zeros(B + 1)), r"timesteps must be \(B,\)"),
        (_bad(text_states=torch.randn(B, TEXT_LEN, 5)), "text_states must be"),
        (_bad(text_mask=torch.ones(B, TEXT_LEN)), "text_mask must be bool"),
        (_bad(actions=torch.zeros(B, FRAMES, dtype=torch.long)), "no action embedding"),
        (_bad(condition=torch.randn(B, 1, FRAMES, SIZE, SIZE)), "condition must be given exactly"),
        (_bad(attention="causal"), "attention must be one of"),
        (_bad(attention="block_causal", chunk_frames=0), "chunk_frames must be a positive int"),
        (_bad(start_frame=-1), "start_frame must be >= 0"),
        (_bad(update_cache=True), "update_cache=True needs a cache"),
    ],
)
def test_bad_input_is_named(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model(**kwargs)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="condition_channels"):
        DiTConfig(**{**TINY, "condition_channels": 4})
    with pytest.raises(ValueError, match="attention_head_dim"):
        DiTConfig(**{**TINY, "attention_head_dim": 5})
    with pytest.raises(ValueError, match="qk_norm"):
        DiTConfig(**{**TINY, "qk_norm": None})
    with pytest.raises(ValueError, match="patch_context"):
        DiTConfig(**{**TINY, "patch_context": -1})
    with pytest.raises(ValueError, match="frame_positions must be >= 0"):
        DiTConfig(**{**TINY, "frame_positions": -1})
    assert KVCache(3).num_layers == 3


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double().cpu() - ref.double().cpu()).norm() / ref.double().cpu().norm()).item()


@pytest.mark.cuda
@torch.no_grad()
def test_cuda_fp32_and_bf16_autocast_match_the_cpu(model):
    latents, t, text = _inputs()
    mask = torch.ones(B, TEXT_LEN, dtype=torch.bool)
    mask[0, 4:] = False
    kwargs = {"text_mask": mask}
    cuda = VideoDiT(model.config).cuda().eval()
    cuda.load_state_dict(model.state_dict())
    on_cuda = {"text_mask": mask.cuda()}
    for attention in ({}, {"attention": "block_causal", "chunk_frames": 2}):
        ref = model(latents, t, text, **kwargs, **attention)
        fp32 = cuda(latents.cuda(), t.cuda(), text.cuda(), **on_cuda, **attention)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = cuda(latents.cuda(), t.cuda(), text.cuda(), **on_cuda, **attention)
        # cuDNN runs the patch convolution in TF32 by default: about 1e-4 of error, not 1e-7.
        assert _relative_error(fp32, ref) < 1e-3
        assert bf16.dtype == torch.bfloat16 and _relative_error(bf16, ref) < 2e-2


@pytest.mark.cuda
@torch.no_grad()
def test_self_attention_runs_on_flash_attention_in_both_modes(model):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    latents, t, text = (x.cuda() for x in _inputs())
    cuda = VideoDiT(model.config).cuda().eval().to(torch.bfloat16)
    cuda.load_state_dict(model.state_dict())
    for attention in ({}, {"attention": "block_causal", "chunk_frames": 2}):
        with sdpa_kernel(SDPBackend.MATH):
            ref = cuda(latents.bfloat16(), t, text.bfloat16(), **attention)
        # Only flash allowed: any attention call with a mask would raise "no available kernel".
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = cuda(latents.bfloat16(), t, text.bfloat16(), **attention)
        assert _relative_error(flash, ref) < 2e-2


@pytest.mark.cuda
@torch.no_grad()
def test_streaming_with_the_cache_matches_the_full_pass_on_cuda(model):
    latents, _, text = (x.cuda() for x in _inputs(frames=6))
    t = torch.linspace(0, 1000, B * 6, device="cuda").reshape(B, 6)
    cuda = VideoDiT(model.config).cuda().eval()
    cuda.load_state_dict(model.state_dict())
    full = cuda(latents, t, text, attention="block_causal", chunk_frames=2)
    cache, outs = cuda.new_cache(), []
    for s in range(0, 6, 2):
        kw = {"attention": "block_causal", "chunk_frames": 2, "cache": cache, "update_cache": True}
        outs.append(cuda(latents[:, :, s : s + 2], t[:, s : s + 2], text, **kw))
    assert cache.keys[0].is_cuda
    assert _relative_error(torch.cat(outs, dim=2), full) < 1e-5
