"""The VAE and text-to-video recipes, end to end at toy size: train, cache, resume, export."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema.config import load_config
from kinema.data.manifest import ClipRecord, write_manifest
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.diffusion.flow import broadcast_sigma
from kinema.errors import ConfigError
from kinema.generate.pipeline import Pipeline, first_frame_condition
from kinema.io import probe, write_video
from kinema.models.dit import DiTConfig, VideoDiT
from kinema.models.vae import CausalVAE, load_vae
from kinema.train.checkpoint import list_checkpoints
from kinema.train.recipes import (
    T2VOptions,
    T2VRecipe,
    T2VTask,
    VAERecipe,
    build_latent_cache,
    train_t2v,
    train_vae,
)

TINY_DATA = ["data.width=32", "data.height=32", "data.frames=5", "data.num_workers=0"]
TINY_VAE = [
    "vae.latent_channels=4",
    "vae.base_channels=8",
    "vae.channel_multipliers=[1,2,2]",
    "vae.spatial_downsample=4",
    "vae.temporal_downsample=4",
]
TINY_DIT = [
    "dit.num_attention_heads=2",
    "dit.attention_head_dim=16",
    "dit.in_channels=4",
    "dit.out_channels=4",
    "dit.ffn_dim=64",
    "dit.num_layers=2",
    "dit.freq_dim=32",
]


def loop(out: Path, steps: int) -> list[str]:
    settings = {"out_dir": out, "steps": steps, "batch_size": 2, "warmup_steps": 1, "checkpoint_every": 2}
    return [f"train.{key}={value}" for key, value in settings.items()] + ["train.log_every=1"]


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vae")
    recipe = load_config(VAERecipe, None, [*TINY_DATA, *TINY_VAE, *loop(out, 4), "loss.stats_batches=2"])
    result = train_vae(recipe, progress=False)
    assert result.step == 4
    return out / "final"


def test_vae_recipe_trains_and_saves_a_loadable_vae_with_latent_stats(vae_folder):
    vae = load_vae(vae_folder)
    assert vae.latent_shape(5, 32, 32) == (4, 2, 8, 8)
    assert not torch.equal(vae.latent_std, torch.ones_like(vae.latent_std))  # measured, not the default
    assert len(list_checkpoints(vae_folder.parent / "checkpoints")) == 2
    # The end-of-run sample: 4 held-out clips beside their reconstructions, and their PSNR.
    sample = vae_folder.parent / "samples" / "reconstruction_00000004.mp4"
    assert probe(sample).width == 4 * 2 * 32 and probe(sample).num_frames == 17
    last = json.loads((vae_folder.parent / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < last["sample/psnr"] < 60


def test_vae_recipe_fine_tunes_from_init_on_footage(vae_folder, tmp_path):
    clips = tmp_path / "clips"
    for i in range(2):  # real, decoded mp4 footage (the shapes world written to files)
        write_video(
            clips / f"clip{i}.mp4", make_clip(ShapesConfig(width=48, height=40, frames=12), i).frames, 8.0
        )
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [ClipRecord(f"clips/clip{i}.mp4", 8.0, 12, 48, 40) for i in range(2)])
    base = [*TINY_DATA, *TINY_VAE, f"data.source={manifest}", "loss.stats_batches=1"]
    recipe = load_config(VAERecipe, None, [*base, f"init={vae_folder}", *loop(tmp_path / "ft", 2)])
    start = load_vae(vae_folder).state_dict()
    train_vae(recipe, progress=False)
    tuned = load_vae(tmp_path / "ft" / "final").state_dict()
    # It started from init: the output conv moved a little in 2 steps, not to a fresh random draw.
    moved = (tuned["decoder.conv_out.weight"] - start["decoder.conv_out.weight"]).abs().max()
    assert 0 < moved < 0.05
    wrong = load_config(VAERecipe, None, [*base, f"init={vae_folder}", "vae.latent_channels=8"])
    with pytest.raises(
        ConfigError,
        match=r"does not match the recipe's vae section \(vae.latent_channels: recipe 8, saved 4\)",
    ):
        train_vae(wrong, progress=False)
    missing = load_config(VAERecipe, None, [*base, f"init={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="init: no saved VAE at"):
        train_vae(missing, progress=False)


def t2v_recipe(vae_folder: Path, out: Path, steps: int, clips: int = 8) -> T2VRecipe:
    options = [f"t2v.vae={vae_folder}", f"t2v.num_clips={clips}"]
    return load_config(T2VRecipe, None, [*TINY_DATA, *TINY_DIT, *options, *loop(out, steps)])


def test_latent_cache_is_built_once_and_rebuilt_when_its_inputs_change(vae_folder, tmp_path):
    path = tmp_path / "cache" / "latents.safetensors"
    cache = build_latent_cache(t2v_recipe(vae_folder, tmp_path, 1), path, progress=False)
    assert len(cache) == 8 and cache.latents.shape == (8, 4, 2, 8, 8)
    assert cache.text_states.shape == (8, 32, 384) and cache.text_mask.dtype == torch.bool
    assert all(isinstance(c, str) and c for c in cache.captions)
    stamp = path.stat().st_mtime_ns
    build_latent_cache(t2v_recipe(vae_folder, tmp_path, 1), path, progress=False)
    assert path.stat().st_mtime_ns == stamp
    assert len(build_latent_cache(t2v_recipe(vae_folder, tmp_path, 1, clips=6), path, progress=False)) == 6


def test_t2v_recipe_trains_resumes_and_exports(vae_folder, tmp_path):
    straight = train_t2v(t2v_recipe(vae_folder, tmp_path / "a", 4), progress=False)
    first_half = train_t2v(t2v_recipe(vae_folder, tmp_path / "b", 4), progress=False)
    assert first_half.step == 4
    # Drop the last checkpoint: resuming from step 2 must land on the same weights as the straight run.
    list_checkpoints(tmp_path / "b" / "checkpoints")[-1].unlink()
    resumed = train_t2v(t2v_recipe(vae_folder, tmp_path / "b", 4), resume=True, progress=False)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert probe(tmp_path / "b" / "samples" / "samples_00000004.mp4").num_frames == 5
    model = VideoDiT.from_pretrained(tmp_path / "b" / "final")
    assert model.config.text_dim == 384 and model.config.num_layers == 2
    # The run also leaves a whole fp16 pipeline that generates what the EMA model does.
    pipeline = Pipeline.from_pretrained(tmp_path / "b" / "pipeline")
    assert (pipeline.info.width, pipeline.info.frames) == (32, 5)
    assert (
        load_file(tmp_path / "b" / "pipeline" / "dit" / "model.safetensors")["proj_out.weight"].dtype
        == torch.float16
    )
    assert pipeline.generate("a red circle moving right", steps=2).shape == (5, 32, 32, 3)


def test_t2v_refuses_a_text_width_the_encoder_does_not_give(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 1)
    recipe.dit.text_dim = 512
    with pytest.raises(ValueError, match="text_dim is 512"):
        train_t2v(recipe, progress=False)


@pytest.mark.parametrize("t2v", ["t2v_shapes", "t2v_shapes_gpu"])
def test_bundled_recipes_load_and_fit_the_size_budget(t2v):
    vae_recipe = load_config(VAERecipe, "vae_shapes")
    t2v_recipe = load_config(T2VRecipe, t2v)
    vae, dit = CausalVAE(vae_recipe.vae), VideoDiT(t2v_recipe.dit)
    assert vae.latent_shape(17, 64, 64) == (8, 17, 16, 16) and dit.config.latent_channels == 8
    assert 8 * math.prod(dit.config.patch_size) < dit.config.dim  # each token's values fit its width
    fp16_megabytes = 2 * sum(p.numel() for m in (vae, dit) for p in m.parameters()) / 1e6
    assert fp16_megabytes <= 25, fp16_megabytes


def test_t2v_learns_image_to_video_when_asked(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.sample_first_frame_steps = 3
    with pytest.raises(ValueError, match=r"sample_first_frame_steps > 0 needs t2v\.first_frame_prob > 0"):
        train_t2v(recipe, progress=False)
    recipe.t2v.first_frame_prob = 0.5
    with pytest.raises(ValueError, match="condition_channels = latent channels \\+ 1 = 5"):
        train_t2v(recipe, progress=False)
    recipe.dit.in_channels, recipe.dit.condition_channels = 9, 5
    result = train_t2v(recipe, progress=False)
    assert result.step == 2 and VideoDiT.from_pretrained(tmp_path / "final").config.condition_channels == 5
    # The exported pipeline draws its first frame first by default, as the recipe asked.
    assert Pipeline.from_pretrained(tmp_path / "pipeline").info.first_frame_steps == 3
    recipe.t2v.sample_first_frame_steps = -1
    with pytest.raises(ValueError, match=r"t2v\.sample_first_frame_steps >= 0, got 20 and -1"):
        train_t2v(recipe, progress=False)


def latent_batch(x0: torch.Tensor) -> dict[str, torch.Tensor]:
    """A T2V training batch of latents `x0` with a two-token zero prompt each."""
    tokens = torch.ones(len(x0), 2, dtype=torch.bool)
    return {"latents": x0, "text_states": torch.zeros(len(x0), 2, 8), "text_mask": tokens}


class InputRecorder(torch.nn.Module):
    """Stands in for a DiT whose inputs a test reads: it keeps the latents and condition, and predicts zero."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config, self.seen = config, {}

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.seen = {"noisy": noisy, "condition": kwargs["condition"]}
        return torch.zeros_like(noisy)


def test_t2v_stacks_each_frames_noisy_previous_frame_after_the_first_frame():
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 3, 4, 4)
    batch = latent_batch(x0)
    recorder = InputRecorder(DiTConfig(in_channels=13, out_channels=4, condition_channels=9))
    options = T2VOptions(previous_frame=True, first_frame_prob=1.0)
    T2VTask(recorder, options, torch.zeros(1, 2, 8), batch["text_mask"][:1]).loss(recorder, batch)
    noisy, condition = recorder.seen["noisy"], recorder.seen["condition"]
    assert condition.shape == (2, 9, 3, 4, 4)
    assert torch.equal(
        condition[:, :5], first_frame_condition(x0[:, :, :1], torch.ones(2, dtype=torch.bool), 3)
    )
    # Each frame sees the one before it as noisy as it is; the first frame sees zeros.
    assert torch.equal(condition[:, 5:, 1:], noisy[:, :, :-1]) and not condition[:, 5:, 0].any()


def test_t2v_trains_the_asked_fraction_of_batches_on_first_frames_alone():
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 3, 4, 4)
    batch = latent_batch(x0)
    recorder = InputRecorder(DiTConfig(in_channels=9, out_channels=4, condition_channels=5))

    def frames_seen(image_prob: float) -> tuple[int, torch.Tensor]:
        options = T2VOptions(first_frame_prob=1.0, image_prob=image_prob)
        task = T2VTask(recorder, options, torch.zeros(1, 2, 8), batch["text_mask"][:1])
        _, parts = task.loss(recorder, batch)
        assert parts.get("image_batch", 0.0) == float(recorder.seen["noisy"].shape[2] == 1)
        return recorder.seen["noisy"].shape[2], recorder.seen["condition"]

    frames, condition = frames_seen(1.0)
    # An image is the clip's first latent frame, noised, and never handed to the DiT as its own condition.
    assert frames == 1 and condition.shape == (2, 5, 1, 4, 4) and not condition.any()
    assert frames_seen(0.0)[0] == 3
    counts = [frames_seen(0.5)[0] for _ in range(200)]
    assert 70 <= counts.count(1) <= 130 and counts.count(1) + counts.count(3) == 200


def test_t2v_trains_on_images_into_a_pipeline_whose_first_pass_is_one(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.image_prob = 1.5
    with pytest.raises(ValueError, match=r"t2v\.image_prob must be in \[0, 1\], got 1\.5"):
        train_t2v(recipe, progress=False)
    recipe.t2v.image_prob, recipe.t2v.attention = 0.5, "block_causal"
    with pytest.raises(ValueError, match=r"image_prob > 0 needs dit.patch_size\[0\] = 1 and t2v.attention"):
        train_t2v(recipe, progress=False)
    recipe.t2v.attention, recipe.t2v.first_frame_prob, recipe.t2v.sample_first_frame_steps = (
        "bidirectional",
        0.5,
        2,
    )
    recipe.dit.in_channels, recipe.dit.condition_channels = 9, 5
    assert train_t2v(recipe, progress=False).step == 2
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("image_batch" in row for row in logged)
    info = Pipeline.from_pretrained(tmp_path / "pipeline").info
    assert info.first_frame_alone and info.first_frame_steps == 2


def test_t2v_trains_with_frame_stacking_into_a_pipeline_that_uses_it(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.previous_frame, recipe.t2v.first_frame_prob = True, 0.5
    with pytest.raises(
        ValueError, match=r"dit.condition_channels must be 0 or 5 .* \+ 4 for the previous frame, got 0"
    ):
        train_t2v(recipe, progress=False)
    recipe.dit.in_channels, recipe.dit.condition_channels = 8, 4
    with pytest.raises(ValueError, match=r"= 5 \(\+ 4 with t2v.previous_frame\), got 4"):
        train_t2v(recipe, progress=False)
    recipe.dit.in_channels, recipe.dit.condition_channels = 13, 9
    assert train_t2v(recipe, progress=False).step == 2
    pipeline = Pipeline.from_pretrained(tmp_path / "pipeline")
    assert pipeline.info.previous_frame and pipeline.dit.config.condition_channels == 9
    image = np.full((32, 32, 3), 200, dtype=np.uint8)
    plain = pipeline.generate("a red circle moving right", steps=2)
    started = pipeline.generate("a red circle moving right", steps=2, image=image)
    assert plain.shape == started.shape == (5, 32, 32, 3) and not np.array_equal(plain, started)


def test_t2v_warns_when_a_token_carries_more_values_than_the_model_is_wide(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 1)
    recipe.dit.patch_size = (1, 4, 4)  # 4 channels x 16 = 64 values a token, 32 wide
    with pytest.warns(UserWarning, match="carries 64 latent values but the model is 32 wide"):
        train_t2v(recipe, progress=False)


def test_t2v_with_clean_sample_prediction_trains_wide_patches_and_exports_it(vae_folder, tmp_path, recwarn):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.dit.patch_size = (1, 4, 4)  # as wide as above, yet no warning: clean latents are redundant
    recipe.t2v.prediction = "sample"
    result = train_t2v(recipe, progress=False)
    assert result.step == 2 and not [w for w in recwarn if "carries" in str(w.message)]
    pipeline = Pipeline.from_pretrained(tmp_path / "pipeline")
    assert pipeline.info.prediction == "sample"
    assert pipeline.generate("a red circle moving right", steps=2).shape == (5, 32, 32, 3)
    recipe.t2v.prediction = "epsilon"
    with pytest.raises(ValueError, match=r"t2v\.prediction must be one of"):
        train_t2v(recipe, progress=False)


def test_t2v_with_frame_correlated_noise_exports_it_for_sampling(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.noise_correlation, recipe.t2v.sample_steps = 0.5, 3
    assert train_t2v(recipe, progress=False).step == 2
    pipeline = Pipeline.from_pretrained(tmp_path / "pipeline")
    assert pipeline.info.noise_correlation == 0.5 and pipeline.info.steps == 3
    video = pipeline.generate("a red circle moving right", steps=2, seed=3)
    assert (video == pipeline.generate("a red circle moving right", steps=2, seed=3)).all()
    recipe.t2v.noise_correlation = 1.0
    with pytest.raises(ValueError, match=r"t2v.noise_correlation must be in \[0, 1\), got 1.0"):
        train_t2v(recipe, progress=False)
    recipe.t2v.noise_correlation, recipe.t2v.sample_steps = 0.5, 0
    with pytest.raises(ValueError, match=r"t2v\.sample_steps must be >= 1 .*, got 0 and 0"):
        train_t2v(recipe, progress=False)


def test_t2v_draws_a_noise_level_per_frame_for_the_asked_fraction_of_clips():
    torch.manual_seed(0)
    sigma, target = T2VTask(None, T2VOptions(), None, None).noise_levels(8, 5)
    assert sigma.shape == (8,) and target is None
    options = T2VOptions(frame_sigma_prob=0.3, shift=3.0)
    sigma, target = T2VTask(None, options, None, None).noise_levels(2000, 5)
    assert sigma.shape == (2000, 5) and ((sigma > 0) & (sigma < 1)).all() and target.all()
    own = sigma.std(dim=1) > 0
    assert abs(own.float().mean().item() - 0.3) < 0.04
    assert (sigma[~own] == sigma[~own][:, :1]).all()  # the other clips keep one level for all frames


def test_t2v_trains_with_per_frame_noise_levels_and_refuses_bad_settings(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.frame_sigma_prob = 1.0
    result = train_t2v(recipe, progress=False)
    assert result.step == 2 and math.isfinite(result.last_loss)
    recipe.t2v.frame_sigma_prob = 1.5
    with pytest.raises(ValueError, match=r"t2v.frame_sigma_prob must be in \[0, 1\], got 1.5"):
        train_t2v(recipe, progress=False)
    recipe.t2v.frame_sigma_prob, recipe.dit.patch_size = 0.5, (2, 2, 2)
    with pytest.raises(ValueError, match=r"needs dit.patch_size\[0\] = 1"):
        train_t2v(recipe, progress=False)


class OracleDiT(torch.nn.Module):
    """Predicts the true velocity of known clean latents, plus a fixed error."""

    config = SimpleNamespace(condition_channels=0)

    def __init__(self, x0: torch.Tensor, error: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.error = x0, error

    def forward(self, noisy: torch.Tensor, timestep: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        sigma = broadcast_sigma(timestep / 1000, noisy)
        return (noisy - (1 - sigma) * self.x0) / sigma - self.x0 + self.error


def test_t2v_motion_weight_counts_errors_where_an_object_moves_more():
    x0 = torch.zeros(1, 4, 3, 4, 4)
    x0[:, :, 1, 0, 0] = x0[:, :, 2, 0, 1] = 1.0  # an object steps right across the top row
    batch = latent_batch(x0)

    def loss(motion_weight: float, at: tuple[int, int]) -> float:
        error = torch.zeros_like(x0)
        error[:, :, 2, at[0], at[1]] = 1.0
        oracle = OracleDiT(x0, error)
        task = T2VTask(
            oracle, T2VOptions(motion_weight=motion_weight), torch.zeros(1, 2, 8), batch["text_mask"]
        )
        return task.loss(oracle, batch)[0].item()

    moving, still = (0, 1), (3, 3)
    assert loss(0.0, moving) == pytest.approx(loss(0.0, still), rel=1e-4)
    assert loss(10.0, moving) == pytest.approx(11 * loss(10.0, still), rel=1e-4)


def test_t2v_trains_with_a_motion_weight_and_refuses_a_negative_one(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    recipe.t2v.motion_weight = 20.0
    result = train_t2v(recipe, progress=False)
    assert result.step == 2 and math.isfinite(result.last_loss)
    recipe.t2v.motion_weight = -1.0
    with pytest.raises(ValueError, match=r"t2v.motion_weight must be >= 0, got -1.0"):
        train_t2v(recipe, progress=False)


def test_t2v_gives_a_nearly_clean_past_to_the_asked_fraction_of_clips():
    torch.manual_seed(0)
    options = T2VOptions(
        attention="block_causal", frame_sigma_prob=1.0, context_prob=0.4, context_sigma_max=0.2
    )
    sigma, target = T2VTask(None, options, None, None).noise_levels(4000, 5)
    clean_past = (sigma[:, :-1] <= 0.2).all(dim=1)
    assert abs(clean_past.float().mean().item() - 0.4) < 0.04
    assert sigma[clean_past, -1].mean() > 0.4  # the frame being made keeps its full range of levels
    given = ~target[:, :-1].any(dim=1)  # a row's past is given whole, or learned whole
    assert torch.equal(given, ~target[:, :-1].all(dim=1)) and target[:, -1].all()
    assert (clean_past[given]).all() and abs(given.float().mean().item() - 0.4) < 0.04


def test_t2v_loss_leaves_out_the_clean_past_it_is_given():
    torch.manual_seed(0)
    x0 = torch.randn(2, 4, 3, 4, 4)
    batch = latent_batch(x0)
    error = torch.zeros_like(x0)
    error[:, :, :-1] = 1.0  # wrong on the past only

    def loss(context_prob: float) -> float:
        options = T2VOptions(attention="block_causal", frame_sigma_prob=1.0, context_prob=context_prob)
        oracle = OracleDiT(x0, error)
        return (
            T2VTask(oracle, options, torch.zeros(1, 2, 8), batch["text_mask"][:1])
            .loss(oracle, batch)[0]
            .item()
        )

    assert loss(1.0) == pytest.approx(0.0, abs=1e-6)  # the past is given, not learned
    assert loss(0.0) == pytest.approx(2 / 3, rel=1e-4)  # Diffusion Forcing learns every frame


def test_t2v_trains_block_causally_into_a_pipeline_that_streams(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 2)
    t2v = recipe.t2v
    t2v.attention, t2v.frame_sigma_prob, t2v.context_prob, t2v.stream_context_sigma = (
        "block_causal",
        1.0,
        0.5,
        0.05,
    )
    t2v.previous_frame, recipe.dit.in_channels, recipe.dit.condition_channels = True, 8, 4
    result = train_t2v(recipe, progress=False)
    assert result.step == 2 and math.isfinite(result.last_loss)
    pipeline = Pipeline.from_pretrained(tmp_path / "pipeline")
    assert pipeline.info.streams and pipeline.info.stream_context_sigma == 0.05
    assert pipeline._stream_settings(14, None, None, None).previous_frame  # it streams frame-stacked
    # 4x time: the first latent frame decodes to one frame and every later one to four.
    pieces = list(pipeline.stream("a red circle moving right", 14, steps=2, guidance=2.0))
    assert [len(p) for p in pieces] == [1, 4, 4, 4, 1]
    assert np.concatenate(pieces).shape == (14, 32, 32, 3)


def test_a_streaming_dit_fine_tunes_from_a_bidirectional_one(vae_folder, tmp_path):
    train_t2v(t2v_recipe(vae_folder, tmp_path / "bi", 2), progress=False)
    start = VideoDiT.from_pretrained(tmp_path / "bi" / "final", dtype=torch.float32).state_dict()
    recipe = t2v_recipe(vae_folder, tmp_path / "causal", 2)
    t2v = recipe.t2v
    t2v.attention, t2v.frame_sigma_prob, t2v.init = "block_causal", 1.0, str(tmp_path / "bi" / "final")
    train_t2v(recipe, progress=False)
    tuned = VideoDiT.from_pretrained(tmp_path / "causal" / "final", dtype=torch.float32).state_dict()
    # It started from init: a query projection moved a little in 2 steps, not to a fresh random draw.
    moved = (tuned["blocks.0.attn1.to_q.weight"] - start["blocks.0.attn1.to_q.weight"]).abs().max()
    assert 0 < moved < 0.01
    # A model trained without a frame table gains one to fine-tune; the rest of its config must match.
    recipe.dit.frame_positions = 17
    train_t2v(recipe, progress=False)
    grown = VideoDiT.from_pretrained(tmp_path / "causal" / "final", dtype=torch.float32)
    assert grown.config.frame_positions == 17
    recipe.dit.num_layers = 3
    with pytest.raises(
        ConfigError,
        match=r"does not match the recipe's dit section \(dit.num_layers: recipe 3, saved 2\)",
    ):
        train_t2v(recipe, progress=False)
    t2v.init = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"t2v\.init: no saved DiT at"):
        train_t2v(recipe, progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"attention": "causal"}, "t2v.attention must be one of"),
        ({"attention": "block_causal", "noise_correlation": 0.5}, "draws each chunk's noise on its own"),
        ({"frame_sigma_prob": 0.0, "context_prob": 0.5}, r"t2v.context_prob needs t2v.frame_sigma_prob > 0"),
        ({"stream_context_sigma": 1.0}, r"t2v.stream_context_sigma must be in \[0, 1\)"),
    ],
)
def test_t2v_refuses_streaming_settings_it_cannot_train(vae_folder, tmp_path, changes, message):
    recipe = t2v_recipe(vae_folder, tmp_path, 1)
    for key, value in {"attention": "block_causal", "frame_sigma_prob": 1.0, **changes}.items():
        setattr(recipe.t2v, key, value)
    with pytest.raises(ValueError, match=message):
        train_t2v(recipe, progress=False)


def test_t2v_refuses_a_dit_that_does_not_fit_the_vae_latents(vae_folder, tmp_path):
    recipe = t2v_recipe(vae_folder, tmp_path, 1)
    recipe.dit.in_channels = recipe.dit.out_channels = 6
    with pytest.raises(ValueError, match="the VAE gives 4 latent channels but the DiT takes 6"):
        train_t2v(recipe, progress=False)
