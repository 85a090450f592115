"""Context prediction (Pathak et al. 2016): exactly the removed region changes, and the loss looks where documented."""

from __future__ import annotations

import pytest
import torch

from ssl_medbench.pretext_tasks.context_prediction import ContextPrediction


def _images(batch: int = 6) -> torch.Tensor:
    return (
        torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 5
    )  # no pixel equals the fill value


@pytest.mark.parametrize(
    "config",
    [{"mask": "central"}, {"mask": "random_blocks"}, {"mask": "random_blocks", "blocks": 1, "fill_value": -1.0}],
)
def test_exactly_the_removed_region_changes_in_every_channel(config):
    task = ContextPrediction(ContextPrediction.Config(**config))
    images = _images()
    inputs, targets = task.make_batch(images, torch.Generator().manual_seed(1))
    mask = targets[:, -1].bool()
    assert torch.equal(targets[:, :-1], images)
    assert torch.equal(inputs != images, mask[:, None].expand_as(images))
    assert (inputs[mask[:, None].expand_as(images)] == task.config.fill_value).all()


def test_central_region_is_the_centred_square_of_half_the_side():
    task = ContextPrediction(ContextPrediction.Config(mask="central"))
    _, targets = task.make_batch(_images(2), torch.Generator())
    expected = torch.zeros(32, 32)
    expected[8:24, 8:24] = 1
    assert torch.equal(targets[0, -1], expected) and torch.equal(targets[1, -1], expected)


def test_random_blocks_are_unions_of_squares_that_differ_between_images():
    task = ContextPrediction(ContextPrediction.Config(blocks=3, block_fraction=0.25))
    _, targets = task.make_batch(_images(50), torch.Generator().manual_seed(2))
    masks = targets[:, -1]
    area = masks.sum(dim=(1, 2))
    assert area.min() >= 64 and area.max() <= 3 * 64  # one 8x8 block at least, three disjoint at most
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 50


def test_loss_is_the_mean_squared_error_on_the_removed_region_only_by_default():
    task = ContextPrediction(ContextPrediction.Config(mask="central"))
    images = _images(2)
    _, targets = task.make_batch(images, torch.Generator())
    mask = targets[:, -1:].bool().expand_as(images)
    outside_wrong = images + 3 * (~mask)
    assert float(task.loss(outside_wrong, targets)["loss"]) == 0.0
    inside_wrong = images + 2 * mask
    assert float(task.loss(inside_wrong, targets)["loss"]) == pytest.approx(4.0)


def test_outside_weight_adds_the_rest_of_the_image_by_hand_computed_weights():
    task = ContextPrediction(ContextPrediction.Config(mask="central", outside_weight=0.1))
    images = _images(1)
    _, targets = task.make_batch(images, torch.Generator())
    mask = targets[:, -1:].bool().expand_as(images)
    outputs = images + torch.where(mask, 2.0, 1.0)  # squared errors: 4 inside, 1 outside
    inside, outside = 16 * 16, 32 * 32 - 16 * 16
    expected = (inside * 4 + 0.1 * outside * 1) / (inside + 0.1 * outside)
    assert float(task.loss(outputs, targets)["loss"]) == pytest.approx(expected)
    assert float(task.loss(outputs, targets)["removed_region_mse"]) == pytest.approx(4.0)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"mask": "ring"}, "mask"),
        ({"blocks": 0}, "blocks"),
        ({"outside_weight": -1.0}, "outside_weight"),
        ({"central_fraction": 1.0}, "central_fraction"),
        ({"decoder": "mlp"}, "decoder"),
    ],
)
def test_bad_configs_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        ContextPrediction(ContextPrediction.Config(**config))
