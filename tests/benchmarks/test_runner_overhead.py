"""One epoch of segmentation finetuning through the runner's training loop (progress bar, loss bookkeeping,
MLflow logging, per-epoch checkpoint) costs at most 1.10x a bare PyTorch loop over the same model, batches
and optimiser (medians, same run)."""

from __future__ import annotations

import copy

import mlflow
import pytest
import torch

from benchmark.checkpoints import Checkpoint
from benchmark.grid import TrainConfig, load_grid
from benchmark.training import train
from ssl_medbench.datasets.patches import PatchSampler
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.networks.encoder import create_encoder
from tests.benchmarks.ratios import paired_medians

MAX_OVERHEAD = 1.10


@pytest.fixture(scope="module")
def phantom_volumes(tiny_phantom_root, tmp_path_factory):
    from ssl_medbench.datasets import DATASETS

    dataset = DATASETS.get("brats")(
        DATASETS.get("brats").Config(root=str(tiny_phantom_root)), tmp_path_factory.mktemp("cache")
    )
    dataset.prepare()
    return [dataset.load(subject) for subject in dataset.subject_ids()]


def test_runner_epoch_costs_at_most_1_10x_a_bare_loop(benchmark, phantom_volumes, tmp_path):
    grid = load_grid("smoke")
    schedule = TrainConfig(
        epochs=1,
        steps_per_epoch=grid.finetune.steps_per_epoch,
        batch_size=grid.finetune.batch_size,
        learning_rate=grid.finetune.learning_rate,
    )
    task = DOWNSTREAM_TASKS.get("brats_segmentation")(grid.downstream_config("brats_segmentation"), 4)
    torch.manual_seed(0)
    model = task.build_model(create_encoder(grid.encoder, 4), None)
    sampler = PatchSampler(phantom_volumes, grid.downstream_config("brats_segmentation").patch_size)
    generator = torch.Generator().manual_seed(0)
    batches = [sampler.sample(schedule.batch_size, generator) for _ in range(schedule.steps_per_epoch)]
    runner_model, bare_model = copy.deepcopy(model), copy.deepcopy(model)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    checkpoint = Checkpoint(tmp_path / "checkpoint.pt", every=1)

    def runner_epoch() -> None:
        checkpoint.discard()
        with mlflow.start_run():
            train(
                runner_model,
                lambda start: iter(batches[start:]),
                task.loss,
                schedule,
                on_epoch=lambda epoch, losses: mlflow.log_metrics(
                    {f"train_{k}": v for k, v in losses.items()}, step=epoch
                ),
                description="runner",
                checkpoint=checkpoint,
            )

    def bare_epoch() -> None:
        optimiser = torch.optim.Adam(bare_model.parameters(), lr=schedule.learning_rate)
        bare_model.train()
        for inputs, targets in batches:
            loss = task.loss(bare_model(inputs), targets)["loss"]
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    benchmark.group = "runner vs bare loop, one smoke finetuning epoch"
    runner, bare = paired_medians(benchmark, runner_epoch, bare_epoch, rounds=3)
    assert runner / bare <= MAX_OVERHEAD, f"runner epoch {runner:.2f} s vs bare loop {bare:.2f} s: {runner / bare:.3f}x"
