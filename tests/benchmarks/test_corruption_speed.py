"""Pretext corruption (CR, JS, RP, CP, MIM) of a batch of 64 patches costs under 5 % of one training step of the smoke
network (medians, same run): making batches never starves the model. Models Genesis chains three transformations
(local shuffling, an intensity curve, painting) and is held to 25 %; SimCLR augments every image twice (crop,
intensities, blur, noise) and is held to 35 % of this step, which encodes half the images its own step encodes."""

from __future__ import annotations

import pytest
import torch

from benchmark.grid import load_grid
from ssl_medbench.networks.encoder import create_encoder
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import PretextNetwork
from tests.benchmarks.ratios import paired_medians

#: The largest share of a training step that corrupting a batch may cost, per task.
MAX_SHARE = {
    "context_restoration": 0.05,
    "jigsaw": 0.05,
    "relative_position": 0.05,
    "context_prediction": 0.05,
    "masked_modelling": 0.05,
    "models_genesis": 0.25,
    "simclr": 0.35,
}
GRID = load_grid("smoke")
DATASET = "brats_phantom"


@pytest.fixture(scope="module")
def smoke_step():
    """One optimiser step of the smoke grid's context-restoration network (U-Net decoder) at its batch size."""
    torch.manual_seed(0)
    task = PRETEXT_TASKS.get("context_restoration")(GRID.pretext_config_for("context_restoration", DATASET))
    network = PretextNetwork.for_task(task, create_encoder(GRID.encoder, 4), 4)
    optimiser = torch.optim.Adam(network.parameters())
    size = GRID.input_view("brats_segmentation").size
    inputs, targets = task.make_batch(
        torch.randn(GRID.pretrain.batch_size, 4, size, size), torch.Generator().manual_seed(0)
    )

    def step() -> None:
        loss = task.loss(network(inputs), targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


@pytest.mark.parametrize("name", sorted(MAX_SHARE))
def test_corrupting_64_patches_costs_under_its_share_of_a_training_step(benchmark, smoke_step, name):
    task = PRETEXT_TASKS.get(name)(GRID.pretext_config_for(name, DATASET))
    size = GRID.input_view("brats_segmentation").size
    images, generator = torch.randn(64, 4, size, size), torch.Generator().manual_seed(0)
    benchmark.group = "pretext corruption vs smoke training step"
    corruption, step = paired_medians(benchmark, lambda: task.make_batch(images, generator), smoke_step, rounds=9)
    assert corruption / step < MAX_SHARE[name], (
        f"{name}: {corruption * 1e3:.1f} ms per batch of 64 = {corruption / step:.1%} of a {step * 1e3:.0f} ms step"
    )
