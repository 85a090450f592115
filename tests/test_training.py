"""The training loop's checkpoints (a resumed job ends exactly where an uninterrupted one does), step-indexed
batches (the same with and without DataLoader workers), the runtime options and the pretrain-job count."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from benchmark.batches import StepBatches, host_batches, step_seed
from benchmark.checkpoints import Checkpoint
from benchmark.grid import TrainConfig, load_grid
from benchmark.learning_rates import learning_rate_at
from benchmark.planner import plan_grid
from benchmark.runtime import RuntimeConfig
from benchmark.training import train
from ssl_medbench.core.errors import ConfigError

SCHEDULE = TrainConfig(epochs=3, steps_per_epoch=4, batch_size=5, learning_rate=0.01)
COSINE = dataclasses.replace(SCHEDULE, learning_rate_schedule="cosine", warmup_fraction=0.25)  # 3 of 12


class NoiseSampler:
    """Batches of Gaussian images and their doubled values: a regression a 1x1 convolution can learn."""

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn((batch_size, 2, 6, 6), generator=generator)
        return images, 2 * images


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loss": nn.functional.mse_loss(outputs, targets)}


def _train(
    checkpoint: Checkpoint | None, interrupt_after: int | None = None, schedule: TrainConfig = SCHEDULE
) -> tuple[nn.Module, list, list[int]]:
    torch.manual_seed(0)
    model = nn.Conv2d(2, 2, 1)
    batches = StepBatches(NoiseSampler(), SCHEDULE.batch_size, seed=11)
    logged: list[int] = []

    def on_epoch(epoch: int, means: dict[str, float]) -> None:
        logged.append(epoch)
        if epoch == interrupt_after:
            raise KeyboardInterrupt

    history = train(
        model,
        lambda start: (b for _, b in host_batches(batches, range(start, 12))),
        _mse,
        schedule,
        on_epoch,
        "test",
        checkpoint=checkpoint,
    )
    return model, history, logged


@pytest.mark.parametrize("schedule", [SCHEDULE, COSINE], ids=["constant", "warm-up and cosine"])
def test_a_job_resumed_from_its_checkpoint_ends_exactly_where_an_uninterrupted_one_does(tmp_path, schedule):
    reference, reference_history, _ = _train(None, schedule=schedule)
    checkpoint = Checkpoint(tmp_path / "job.pt", every=1)
    with pytest.raises(KeyboardInterrupt):
        _train(checkpoint, interrupt_after=1, schedule=schedule)
    assert checkpoint.path.is_file()
    resumed, history, logged = _train(checkpoint, schedule=schedule)
    assert logged == [0, 1, 2]  # the two epochs done before are logged again into the new run
    assert history == reference_history
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_learning_rate_schedules_give_the_hand_computed_rates():
    schedule = TrainConfig(epochs=2, steps_per_epoch=5, learning_rate=0.1, warmup_fraction=0.2)
    assert [learning_rate_at(schedule, step) for step in range(10)] == pytest.approx([0.05] + [0.1] * 9)
    cosine = dataclasses.replace(schedule, learning_rate_schedule="cosine")
    rates = [learning_rate_at(cosine, step) for step in range(10)]
    # after 2 warm-up steps, 8 cosine steps: step 2 + k has 0.1 * (1 + cos(pi k / 8)) / 2
    assert rates[:3] == pytest.approx([0.05, 0.1, 0.1])
    assert rates[6] == pytest.approx(0.05)  # half-way down
    assert rates[9] == pytest.approx(0.05 * (1 + math.cos(7 * math.pi / 8)))
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert [learning_rate_at(SCHEDULE, step) for step in range(12)] == [0.01] * 12  # no warm-up: Adam's fixed rate
    with pytest.raises(
        ValueError, match="^unknown learning_rate_schedule 'step'$"
    ):  # a schedule the grid did not check
        learning_rate_at(dataclasses.replace(SCHEDULE, learning_rate_schedule="step"), 0)


def test_training_follows_the_schedule_as_torchs_own_schedulers_do():
    """The loop's rates against torch's LinearLR warm-up followed by CosineAnnealingLR, on the same batches."""
    trained, _, _ = _train(None, schedule=COSINE)
    torch.manual_seed(0)
    model = nn.Conv2d(2, 2, 1)
    optimiser = torch.optim.Adam(model.parameters(), lr=COSINE.learning_rate)
    warmup = 3
    scheduler = torch.optim.lr_scheduler.SequentialLR(
        optimiser,
        [
            torch.optim.lr_scheduler.LinearLR(optimiser, start_factor=1 / warmup, total_iters=warmup - 1),
            torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=COSINE.total_steps - warmup),
        ],
        milestones=[warmup],
    )
    for _, (inputs, targets) in host_batches(StepBatches(NoiseSampler(), COSINE.batch_size, seed=11), range(12)):
        optimiser.zero_grad()
        _mse(model(inputs), targets)["loss"].backward()
        optimiser.step()
        scheduler.step()
    for name, value in model.state_dict().items():
        assert torch.allclose(trained.state_dict()[name], value, atol=1e-6), name
    constant, _, _ = _train(None)
    assert not torch.allclose(constant.weight, trained.weight, atol=1e-4)


def test_checkpoints_are_written_every_n_epochs_and_after_the_last(tmp_path):
    checkpoint = Checkpoint(tmp_path / "job.pt", every=2)
    with pytest.raises(KeyboardInterrupt):
        _train(checkpoint, interrupt_after=0)
    assert not checkpoint.path.exists()
    with pytest.raises(KeyboardInterrupt):
        _train(checkpoint, interrupt_after=1)
    assert len(torch.load(checkpoint.path, weights_only=True)["history"]) == 2
    _train(checkpoint)
    assert len(torch.load(checkpoint.path, weights_only=True)["history"]) == 3
    checkpoint.discard()
    assert not checkpoint.path.exists()
    never = Checkpoint(tmp_path / "never.pt", every=0)
    _train(never)
    assert not never.path.exists()


def test_an_unreadable_checkpoint_is_reported_and_the_job_starts_over(tmp_path, capsys):
    checkpoint = Checkpoint(tmp_path / "job.pt", every=1)
    checkpoint.path.write_bytes(b"not a checkpoint")
    reference, _, _ = _train(None)
    model, _, logged = _train(checkpoint)
    assert logged == [0, 1, 2] and "could not be read" in capsys.readouterr().out
    assert all(torch.equal(model.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_batches_depend_only_on_seed_and_step_so_loader_workers_change_nothing():
    batches = StepBatches(NoiseSampler(), 4, seed=3)
    here = list(host_batches(batches, range(2, 9)))
    ahead = list(host_batches(batches, range(2, 9), workers=2))
    assert [step for step, _ in ahead] == list(range(2, 9))
    for (_, (a, b)), (_, (c, d)) in zip(here, ahead):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert torch.equal(batches[5][0], here[3][1][0])
    assert not torch.equal(batches[5][0], batches[6][0])
    assert not torch.equal(StepBatches(NoiseSampler(), 4, seed=4)[5][0], batches[5][0])
    assert len({step_seed(seed, step) for seed in range(20) for step in range(200)}) == 4000


def test_gpu_options_are_reported_as_ignored_on_the_cpu_and_change_nothing_there():
    runtime = RuntimeConfig(precision="bf16", channels_last=True, compile=True)
    cpu = torch.device("cpu")
    assert runtime.ignored_on(cpu) == ["precision=bf16", "channels_last", "compile"]
    assert RuntimeConfig().ignored_on(cpu) == [] and runtime.ignored_on(torch.device("cuda")) == []
    model = nn.Conv2d(2, 2, 3)
    assert runtime.training_model(model, cpu) is model
    with runtime.autocast(cpu):
        assert model(torch.ones(1, 2, 5, 5)).dtype == torch.float32
    assert runtime.to_device(torch.ones(1, 2, 5, 5), cpu).is_contiguous()
    assert runtime.memory_format(torch.device("cuda")) == torch.channels_last


def test_runtime_settings_are_checked_and_only_precision_changes_the_job_keys(write_grid):
    path = str(write_grid())
    with pytest.raises(ConfigError, match=r"runtime\.precision: expected one of fp32, bf16, got 'fp16'"):
        load_grid(path, ["runtime.precision=fp16"])
    with pytest.raises(ConfigError, match=r"runtime\.loader_workers: must be >= 0"):
        load_grid(path, ["runtime.loader_workers=-1"])

    def keys(*overrides: str) -> set[str]:
        plan = plan_grid(load_grid(path, list(overrides)), {"phantom": "v1"})
        return {job.key for job in (*plan.pretrain_jobs, *plan.finetune_cells)}

    assert keys() == keys(
        "runtime.loader_workers=2", "runtime.channels_last=true", "runtime.compile=true", "runtime.checkpoint_every=5"
    )
    assert keys().isdisjoint(keys("runtime.precision=bf16"))


def test_pretrain_jobs_are_initialisations_with_pretraining_x_dataset_views_x_seeds():
    grid = load_grid(
        "smoke", ["seeds=[0, 1]", "fractions=[1.0, 0.5, 0.25]", "label_subjects=[]", "protocols_by_task={}"]
    )
    plan = plan_grid(grid, {name: f"{name}-v1" for name in grid.datasets})
    assert len(plan.pretrain_jobs) == 9 * 3 * 2  # AE, RP, JS, CP, CR, RT, MG, MIM, CL x 3 datasets x 2 seeds
    assert len(plan.finetune_cells) == 11 * 3 * 3 * 2
    assert len({job.key for job in plan.pretrain_jobs}) == 54
    used = {cell.pretrain_key for cell in plan.finetune_cells if cell.pretrain_key}
    assert used == {job.key for job in plan.pretrain_jobs}
    assert plan.pretrain_count_line(grid).startswith(
        "pretrain jobs: 54 = 9 initialisations with pretraining x 3 dataset views x 2 seeds, each shared by 3 label "
        "budgets"
    )
    assert plan.pretrain_count_line(grid) in plan.describe(grid, "cpu")


def test_report_line_counts_pretrain_jobs_against_the_product_and_the_cells_that_share_them():
    import pandas as pd

    from ssl_medbench.reports.build import pretrain_sharing

    rows = [
        {
            "status": "FINISHED",
            "kind": "pretrain",
            "initialisation": init,
            "dataset": "brats",
            "seed": seed,
            "job_key": f"{init}{seed}",
            "pretrain_key": None,
        }
        for init in ("autoencoder", "jigsaw")
        for seed in ("0", "1")
    ]
    rows.append(
        {
            "status": "FAILED",
            "kind": "pretrain",
            "initialisation": "context_prediction",
            "dataset": "brats",
            "seed": "0",
            "job_key": "cp0",
            "pretrain_key": None,
        }
    )
    rows += [
        {
            "status": "FINISHED",
            "kind": "finetune",
            "initialisation": "jigsaw",
            "dataset": "brats",
            "seed": "0",
            "job_key": f"c{f}",
            "pretrain_key": "jigsaw0",
        }
        for f in range(3)
    ]
    rows.append(
        {
            "status": "FINISHED",
            "kind": "finetune",
            "initialisation": "random",
            "dataset": "brats",
            "seed": "0",
            "job_key": "r",
            "pretrain_key": "",
        }
    )
    assert pretrain_sharing(pd.DataFrame(rows)) == (
        "4 pretrain jobs (2 initialisations with pretraining x 1 dataset views x 2 seeds = 4), each shared by the "
        "finetune cells that take its view of its dataset: 3 cells started from them."
    )
    assert pretrain_sharing(pd.DataFrame(rows[-1:])) is None
