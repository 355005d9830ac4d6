"""The training loop: it learns, resumes bit for bit, keeps its checkpoints, and runs under torchrun and accelerate."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from kinema.train.checkpoint import list_checkpoints
from kinema.train.loop import EpochBatches, LoopConfig, param_groups, train, warmup_cosine


class Regression:
    """y = x·w + noise, learned by a small MLP; the loss draws fresh noise so RNG state matters."""

    def __init__(self, seed: int = 0, crash_at_call: int | None = None) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 32), nn.GELU(), nn.Linear(32, 1))
        self.calls, self.crash_at_call = 0, crash_at_call

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.crash_at_call:
            raise KeyboardInterrupt  # the run dies here, after its last checkpoint
        x, y = batch
        prediction = model(x + 0.01 * torch.randn_like(x))
        loss = nn.functional.mse_loss(prediction.squeeze(-1), y)
        return loss, {"mse": float(loss.detach())}


def regression_data(n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([1.0, -2.0, 0.5, 3.0]))


def config(tmp_path: Path, **overrides) -> LoopConfig:
    values = dict(
        out_dir=str(tmp_path / "run"),
        batch_size=8,
        steps=12,
        lr=1e-2,
        warmup_steps=2,
        checkpoint_every=4,
        log_every=1,
        keep_last=2,
    )
    return LoopConfig(**(values | overrides))


def parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_it_learns_and_logs(tmp_path):
    result = train(
        Regression(), regression_data(), config(tmp_path, steps=150, checkpoint_every=50), progress=False
    )
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[0]["step"] == 1 and log[-1]["step"] == 150
    assert log[-1]["loss"] < log[0]["loss"] / 10
    assert {"loss", "mse", "lr", "grad_norm", "steps_per_s"} <= set(log[-1])
    assert result.step == 150 and math.isfinite(result.last_loss)
    assert (tmp_path / "run" / "tensorboard").is_dir()


def test_resume_continues_bit_for_bit(tmp_path):
    straight = train(Regression(), regression_data(), config(tmp_path / "a"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        # 8 steps of 1 micro-batch: the crash comes on step 10, after the checkpoint of step 8.
        train(Regression(crash_at_call=10), regression_data(), config(tmp_path / "b"), progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run" / "checkpoints")] == [
        "step_00000004.pt",
        "step_00000008.pt",
    ]
    # A fresh process would build the model from another seed: resume must overwrite all of it.
    resumed = train(
        Regression(seed=99), regression_data(), config(tmp_path / "b"), resume=True, progress=False
    )
    assert resumed.step == 12
    for a, b in zip(parameters(straight.ema), parameters(resumed.ema), strict=True):
        assert torch.equal(a, b)


def test_resume_with_accumulation_and_epochs_crossing(tmp_path):
    # 64 items / batch 8 = 8 batches an epoch; 2 micro-batches a step crosses epochs at step 4.
    cfg = config(tmp_path / "a", grad_accum=2, steps=10, checkpoint_every=3)
    straight = train(Regression(), regression_data(), cfg, progress=False)
    cfg_b = config(tmp_path / "b", grad_accum=2, steps=10, checkpoint_every=3)
    with pytest.raises(KeyboardInterrupt):
        train(Regression(crash_at_call=15), regression_data(), cfg_b, progress=False)
    resumed = train(Regression(seed=5), regression_data(), cfg_b, resume=True, progress=False)
    for a, b in zip(parameters(straight.ema), parameters(resumed.ema), strict=True):
        assert torch.equal(a, b)


def test_keeps_only_the_last_checkpoints_and_no_temp_files(tmp_path):
    train(
        Regression(),
        regression_data(),
        config(tmp_path, steps=20, checkpoint_every=2, keep_last=3),
        progress=False,
    )
    folder = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [f"step_{s:08d}.pt" for s in (16, 18, 20)]


def test_a_nan_loss_stops_the_run_before_it_reaches_the_weights(tmp_path):
    task = Regression()
    before = parameters(task.model)
    task.loss = lambda model, batch: (model(batch[0]).sum() * float("nan"), {})
    with pytest.raises(FloatingPointError, match="loss is nan"):
        train(task, regression_data(), config(tmp_path), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, parameters(task.model), strict=True))


def test_no_weight_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Embedding(3, 8))
    decay, no_decay = param_groups(model, 0.1)
    assert {p.shape for p in decay["params"]} == {torch.Size([8, 4]), torch.Size([3, 8])}
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def test_warmup_then_cosine():
    schedule = warmup_cosine(LoopConfig(steps=110, warmup_steps=10, min_lr_ratio=0.1))
    assert schedule(0) == pytest.approx(0.1) and schedule(9) == pytest.approx(1.0)
    assert schedule(10) == pytest.approx(1.0) and schedule(60) == pytest.approx(0.55)
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)


def test_epoch_batches_resume_and_shard():
    sampler = EpochBatches(20, 3, seed=1)
    stream = iter(sampler)
    first = [next(stream) for _ in range(14)]
    assert len(sampler) == 6 and all(len(b) == 3 for b in first)
    assert sorted(i for b in first[:6] for i in b) == sorted(set(i for b in first[:6] for i in b))
    resumed = EpochBatches(20, 3, seed=1)
    resumed.epoch, resumed.batch = sampler.position_after(9).values()
    assert next(iter(resumed)) == first[9]
    ranks = [iter(EpochBatches(20, 3, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    seen = [{i for _ in range(3) for i in next(batches)} for batches in ranks]
    assert len(seen[0]) == len(seen[1]) == 9 and not seen[0] & seen[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "train.steps"),
        ({"precision": "fp16"}, "train.precision"),
        ({"ema_decay": 1.0}, "ema_decay"),
    ],
)
def test_bad_settings_are_refused(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


DDP_SCRIPT = """
import json, sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_loop import Regression, regression_data, config
from kinema.train.loop import train
import torch.distributed as dist
out, mode = Path(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
task = Regression(seed=int(sys.argv[3]), crash_at_call=5 if mode == "crash" else None)
result = train(task, regression_data(), config(out, steps=6, checkpoint_every=2), resume=mode == "resume", progress=False)
flat = torch.cat([p.detach().flatten() for p in result.ema.parameters()])
rank = dist.get_rank()
(out / f"{{mode}}_rank{{rank}}.json").write_text(json.dumps({{"world": dist.get_world_size(), "params": flat.tolist()}}))
"""


LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],
    # accelerate's --cpu launches through MPI; --multi_gpu goes through torch's launcher, and the
    # loop then picks gloo because no GPU is visible.
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
    ],
}


def launch(launcher: str, script: Path, out: Path, mode: str, seed: int) -> subprocess.CompletedProcess:
    command = [sys.executable, *LAUNCHERS[launcher], str(script), str(out), mode, str(seed)]
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # two CPU processes (gloo), also on a one-GPU machine
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_processes_keep_identical_replicas_and_resume_exactly(tmp_path, launcher):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    straight = launch(launcher, script, tmp_path / "a", "straight", seed=0)
    assert straight.returncode == 0, straight.stderr[-3000:]
    ranks = [json.loads((tmp_path / "a" / f"straight_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["params"] == ranks[1]["params"]
    # Training moved the model away from where it started.
    initial = torch.cat([p.flatten() for p in Regression(seed=0).model.parameters()]).tolist()
    assert ranks[0]["params"] != initial
    # Die after the step-4 checkpoint, then resume from another init: each rank must get its own
    # RNG streams back (they differ: the loop seeds seed + rank) to land on the straight run's weights.
    assert launch(launcher, script, tmp_path / "b", "crash", seed=0).returncode != 0
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "run" / "checkpoints")][
        -1
    ] == "step_00000004.pt"
    resumed = launch(launcher, script, tmp_path / "b", "resume", seed=7)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "b" / "resume_rank1.json").read_text())["params"] == ranks[1]["params"]


def test_ema_warmup_forgets_the_first_weights_fast():
    from torch.optim.swa_utils import AveragedModel

    from kinema.train.loop import ema_with_warmup

    model = nn.Linear(1, 1, bias=False)
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(0.999), use_buffers=True)
    with torch.no_grad():
        model.weight.fill_(10.0)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.update_parameters(model)  # n = 1: decay (1 + 1) / (10 + 1)
    assert ema.module.weight.item() == pytest.approx(10.0 * 2 / 11)
    for _ in range(300):
        ema.update_parameters(model)
    # A fixed 0.999 would still hold 10 * 0.999**301 = 7.4 of the first weights.
    assert ema.module.weight.item() < 0.01


@pytest.mark.cuda
def test_trains_on_cuda_in_bf16_and_resumes_bit_for_bit(tmp_path):
    result = train(
        Regression(),
        regression_data(),
        config(tmp_path / "a", steps=150, checkpoint_every=50),
        progress=False,
    )
    assert next(result.ema.parameters()).is_cuda
    log = [json.loads(line) for line in (tmp_path / "a" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] / 10
    straight = train(Regression(), regression_data(), config(tmp_path / "b"), progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(Regression(crash_at_call=10), regression_data(), config(tmp_path / "c"), progress=False)
    resumed = train(
        Regression(seed=99), regression_data(), config(tmp_path / "c"), resume=True, progress=False
    )
    for a, b in zip(parameters(straight.ema), parameters(resumed.ema), strict=True):
        assert torch.equal(a, b)
