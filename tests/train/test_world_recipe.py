"""The world-model recipe at toy size on a real Breakout recording: cache, train, resume, export, play."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.config import load_config
from kinema.data.games import RecordSettings, record
from kinema.data.manifest import read_manifest, write_manifest
from kinema.errors import ConfigError, KinemaError
from kinema.generate.world import WorldModel, start_frames
from kinema.models.vae import CausalVAE
from kinema.train.checkpoint import list_checkpoints
from kinema.train.world import (
    FrameCache,
    WorldOptions,
    WorldRecipe,
    WorldTask,
    build_frame_cache,
    stacked_condition,
    train_world,
)
from tests.conftest import require_extra, tiny_frame_vae

TINY_DIT = [
    "dit.num_attention_heads=2",
    "dit.attention_head_dim=16",
    "dit.in_channels=4",
    "dit.out_channels=4",
    "dit.ffn_dim=64",
    "dit.num_layers=2",
    "dit.freq_dim=32",
    "dit.num_actions=4",
]


@pytest.fixture(scope="module")
def game(tmp_path_factory) -> tuple[Path, Path]:
    """A real Breakout recording at 32x32 (3 episodes of 40 frames, 6 clips of 20) and a per-frame VAE."""
    require_extra("ale_py", "games")
    root = tmp_path_factory.mktemp("world")
    settings = RecordSettings(
        "ALE/Breakout-v5", frames=120, width=32, height=32, clip_frames=20, max_episode_frames=40
    )
    manifest = record(root / "rec", settings, progress=False)
    tiny_frame_vae().save_pretrained(root / "vae")
    return manifest, root / "vae"


def world_recipe(game, out: Path, steps: int, *extra: str) -> WorldRecipe:
    manifest, vae = game
    overrides = [
        f"data.source={manifest}",
        "data.width=32",
        "data.height=32",
        "data.frames=6",
        f"world.vae={vae}",
        *TINY_DIT,
        f"train.out_dir={out}",
        f"train.steps={steps}",
        "train.batch_size=2",
        "train.warmup_steps=1",
        "train.checkpoint_every=2",
        "train.log_every=1",
        *extra,
    ]
    return load_config(WorldRecipe, None, overrides)


def test_frame_cache_holds_every_frame_and_windows_stay_inside_clips(game, tmp_path):
    manifest, _ = game
    cache = build_frame_cache(
        world_recipe(game, tmp_path, 1), tmp_path / "frames.safetensors", progress=False
    )
    records = read_manifest(manifest)
    assert cache.latents.shape == (120, 4, 8, 8)
    assert cache.actions.tolist() == [a for r in records for a in r.actions]
    # 6 clips of 20 frames: 15 windows of 6 frames each, none across a clip boundary.
    assert len(cache) == 6 * 15
    item = cache[15]
    assert item["latents"].shape == (4, 6, 8, 8)
    assert torch.equal(item["latents"], cache.latents[20:26].float().transpose(0, 1))
    assert item["actions"].tolist() == records[1].actions[:6]
    # The frame before a window is frame stacking's first condition; a clip's first window has none.
    assert not item["has_before"] and not item["before"].any()
    after = cache[16]
    assert after["has_before"] and torch.equal(after["before"], cache.latents[20:21].float().transpose(0, 1))
    # Another window reuses the cache (it holds whole clips); another frame size rebuilds it.
    stamp = (tmp_path / "frames.safetensors").stat().st_mtime_ns
    again = build_frame_cache(
        world_recipe(game, tmp_path, 1, "data.frames=4"), tmp_path / "frames.safetensors", progress=False
    )
    assert torch.equal(again.latents, cache.latents) and len(again) == 6 * 17
    assert (tmp_path / "frames.safetensors").stat().st_mtime_ns == stamp
    smaller = build_frame_cache(
        world_recipe(game, tmp_path, 1, "data.width=16", "data.height=16"),
        tmp_path / "frames.safetensors",
        progress=False,
    )
    assert smaller.latents.shape == (120, 4, 4, 4)


def test_noise_levels_mix_diffusion_forcing_with_a_nearly_clean_past():
    task = WorldTask(None, WorldOptions(context_prob=0.5, context_sigma_max=0.3, chunk_frames=2))
    torch.manual_seed(0)
    sigma, target = task.noise_levels(4000, 8)
    playing = ~target[:, 0]
    assert 0.45 < playing.float().mean() < 0.55  # the half with a clean past
    assert (sigma[playing, :6] <= 0.3).all()
    assert sigma[playing, 6:].std() > 0.2, "the last chunk keeps the full range of noise levels"
    assert not target[playing, :6].any() and target[playing, 6:].all(), "a clean past is not learnt"
    assert target[~playing].all(), "Diffusion Forcing rows learn every frame"
    assert sigma[~playing].std(1).mean() > 0.15, "and draw one level per frame"
    sigma, target = WorldTask(None, WorldOptions(context_prob=0.0)).noise_levels(3, 4)
    assert sigma.shape == (3, 4) and target.all()


def test_frame_stacking_conditions_the_first_frame_on_the_frame_before_the_window():
    torch.manual_seed(0)
    noisy = torch.randn(2, 4, 3, 2, 2)
    batch = {"before": torch.ones(2, 4, 1, 2, 2), "has_before": torch.tensor([True, False])}
    condition = stacked_condition(batch, noisy, torch.zeros(2, 3))
    assert torch.equal(condition[0, :, :1], batch["before"][0])  # σ 0: the frame itself
    assert not condition[1, :, :1].any()  # a clip's start: zeros, as the stream begins
    assert torch.equal(condition[:, :, 1:], noisy[:, :, :-1])
    noised = stacked_condition(batch, noisy, torch.full((2, 3), 0.5))
    assert not torch.equal(noised[0, :, :1], batch["before"][0]) and not noised[1, :, :1].any()


def test_world_recipe_trains_resumes_and_exports_a_playable_model(game, tmp_path):
    straight = train_world(world_recipe(game, tmp_path / "a", 4), progress=False)
    train_world(world_recipe(game, tmp_path / "b", 4), progress=False)
    list_checkpoints(tmp_path / "b" / "checkpoints")[-1].unlink()
    resumed = train_world(world_recipe(game, tmp_path / "b", 4), resume=True, progress=False)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    last = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < last["sample/rollout_psnr"] < 60

    world = WorldModel.from_pretrained(tmp_path / "b" / "pipeline")
    assert world.info.action_names == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    starts = start_frames(tmp_path / "b" / "pipeline")
    assert starts.shape == (6, 32, 32, 3), "the first frame of each of the 6 clips"
    assert not np.array_equal(starts[0], starts[1]), "clips that start mid-episode start elsewhere"
    video = world.rollout(starts[0], [1, 2, 2, 3, 0], seed=0)
    assert video.shape == (6, 32, 32, 3) and np.array_equal(video[0], starts[0])
    assert np.array_equal(video, world.rollout(starts[0], [1, 2, 2, 3, 0], seed=0)), "seeded"


def test_games_keep_their_own_state_and_reject_bad_actions(game, tmp_path):
    train_world(world_recipe(game, tmp_path, 1), progress=False)
    world = WorldModel.from_pretrained(tmp_path / "pipeline")
    first = start_frames(tmp_path / "pipeline")[0]
    a, b = world.new_game(first, seed=0), world.new_game(first, seed=0)
    made_a = []
    for _ in range(3):  # interleaved with another game that presses other keys
        made_a.append(a.step(2))
        b.step(3)
    again = world.new_game(first, seed=0)
    assert all(np.array_equal(x, again.step(2)) for x in made_a)
    assert a.frames_made == b.frames_made == 4
    for bad in (4, -1, 1.5, "LEFT", True):
        with pytest.raises(KinemaError, match=r"action must be an integer in 0\.\.3"):
            a.step(bad)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["dit.num_actions=0"], "dit.num_actions must be"),
        (["dit.num_actions=2"], "actions outside 0..1"),
        (["dit.patch_size=[2,2,2]"], "patch_size[0] must be 1"),
        (["data.frames=1"], "more than one chunk"),
        (["world.chunk_frames=4"], "multiple of world.chunk_frames"),
        (["dit.text_dim=384"], "takes no text"),
        (["world.motion_weight=-1"], "world.motion_weight must be >= 0"),
    ],
)
def test_world_recipe_refuses_settings_it_cannot_train(game, tmp_path, extra, fragment):
    with pytest.raises((ValueError, ConfigError)) as error:
        train_world(world_recipe(game, tmp_path, 1, *extra), progress=False)
    assert fragment in str(error.value)


def test_world_recipe_refuses_a_recording_without_actions(game, tmp_path):
    manifest, vae = game
    plain = [r for r in read_manifest(manifest)]
    for r in plain:
        r.actions, r.path = None, str(manifest.parent / r.path)
    write_manifest(tmp_path / "plain.jsonl", plain)
    recipe = world_recipe((tmp_path / "plain.jsonl", vae), tmp_path / "out", 1)
    with pytest.raises(ValueError, match="has no actions"):
        train_world(recipe, progress=False)


def test_frame_cache_of_too_short_clips_is_an_error(game, tmp_path):
    cache_path = tmp_path / "frames.safetensors"
    build_frame_cache(world_recipe(game, tmp_path, 1), cache_path, progress=False)
    for window in (21, 25):  # one longer than every clip, and more
        with pytest.raises(ValueError, match=rf"no clip .* has {window} frames"):
            FrameCache(cache_path, window=window)


def test_bundled_world_recipes_load_and_fit_the_size_budget():
    from kinema.models.dit import VideoDiT
    from kinema.train.recipes import VAERecipe, recipe_schema

    assert recipe_schema("world_breakout") is WorldRecipe and recipe_schema("vae_breakout") is VAERecipe
    vae = CausalVAE(load_config(VAERecipe, "vae_breakout").vae)
    world = load_config(WorldRecipe, "world_breakout")
    dit = VideoDiT(world.dit)
    assert vae.latent_shape(1, 64, 64) == (8, 1, 16, 16) and dit.config.latent_channels == 8
    assert world.data.frames % world.world.chunk_frames == 0
    assert world.world.window_frames + world.world.sink_frames <= world.data.frames, (
        "plays within its training window"
    )
    fp16_megabytes = 2 * sum(p.numel() for m in (vae, dit) for p in m.parameters()) / 1e6
    assert fp16_megabytes <= 25, fp16_megabytes


def test_frame_stacking_trains_and_plays_with_the_previous_frame(game, tmp_path):
    stacked = ["dit.in_channels=8", "dit.condition_channels=4", "world.motion_weight=20"]
    train_world(world_recipe(game, tmp_path, 2, *stacked), progress=False)
    world = WorldModel.from_pretrained(tmp_path / "pipeline")
    assert world.info.previous_frame and world.settings.previous_frame
    first = start_frames(tmp_path / "pipeline")[0]
    assert world.rollout(first, [2, 2, 3]).shape == (4, 32, 32, 3)
    with pytest.raises(ValueError, match="condition channels are 0 or the previous frame's"):
        train_world(
            world_recipe(game, tmp_path / "bad", 1, "dit.in_channels=9", "dit.condition_channels=5"),
            progress=False,
        )
