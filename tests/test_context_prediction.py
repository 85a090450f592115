"""Context prediction (Pathak et al. 2016): exactly the removed region changes, and the loss looks where documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_medbench.pretext_tasks.context_prediction import ContextPrediction, central_mask


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
        ({"mask": "ring"}, "one of random_blocks, central"),
        ({"blocks": 0}, "blocks"),
        ({"outside_weight": -1.0}, "outside_weight"),
        ({"central_fraction": 1.0}, "central_fraction"),
        ({"central_fraction": 0.0}, "central_fraction"),
        ({"block_fraction": 0.0}, "block_fraction"),
        ({"decoder": "mlp"}, "decoder"),
    ],
)
def test_bad_configs_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        ContextPrediction(ContextPrediction.Config(**config))


def test_the_central_square_is_centred_with_the_odd_pixel_after_it():
    """On 33x30 images a 16-pixel square starts at row 8 and column 7: floor((33 - 16) / 2), floor((30 - 16) / 2)."""
    mask = central_mask(2, (33, 30), 16, torch.device("cpu"))
    expected = torch.zeros(33, 30, dtype=torch.bool)
    expected[8:24, 7:23] = True
    assert torch.equal(mask, expected.expand(2, 33, 30))


def test_a_single_random_block_is_a_whole_square_anywhere_in_the_image():
    """With one block every mask is one full side x side square, and its corner covers every row and column
    where it fits, from the top-left to the bottom-right edge of a non-square image."""
    task = ContextPrediction(ContextPrediction.Config(blocks=1, block_fraction=0.25))
    masks = task.removed_region(600, (24, 32), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (masks.sum(dim=(1, 2)) == 36).all()
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    assert (rows.sum(dim=1) == 6).all() and (cols.sum(dim=1) == 6).all()
    tops, lefts = rows.int().argmax(dim=1), cols.int().argmax(dim=1)
    assert set(tops.tolist()) == set(range(24 - 6 + 1)) and set(lefts.tolist()) == set(range(32 - 6 + 1))


def test_a_one_pixel_removed_region_is_allowed_and_an_empty_one_refused():
    task = ContextPrediction(ContextPrediction.Config(blocks=1, block_fraction=0.25))
    task.check_image_size(4, 4)
    with pytest.raises(ValueError, match="empty on 3x3"):
        task.check_image_size(3, 3)


def test_removed_region_mse_of_a_single_removed_pixel_is_its_squared_error():
    task = ContextPrediction()
    images = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1, 2] = 1
    outputs = images.clone()
    outputs[0, 0, 1, 2] = 0.5
    losses = task.loss(outputs, torch.cat([images, mask], dim=1))
    assert float(losses["removed_region_mse"]) == pytest.approx(0.25)
    assert float(losses["loss"]) == pytest.approx(0.25)


def test_loss_is_the_documented_weighted_mean_when_the_weights_sum_below_one():
    """No removed pixel and a small outside weight: the loss is still the plain mean squared error outside."""
    task = ContextPrediction(ContextPrediction.Config(outside_weight=0.01))
    images = torch.zeros(1, 1, 4, 4)
    targets = torch.cat([images, torch.zeros(1, 1, 4, 4)], dim=1)
    outputs = torch.full((1, 1, 4, 4), 2.0)
    losses = task.loss(outputs, targets)
    assert float(losses["loss"]) == pytest.approx(4.0)
    assert float(losses["removed_region_mse"]) == 0.0


@pytest.mark.parametrize("mask", ["central", "random_blocks"])
def test_the_batch_is_made_on_the_images_device(mask):
    """The meta device stands in for an accelerator: nothing may be built on the CPU and mixed in."""
    meta = torch.device("meta")
    task = ContextPrediction(ContextPrediction.Config(mask=mask))
    inputs, targets = task.make_batch(torch.empty(2, 3, 32, 32, device=meta), torch.Generator())
    assert inputs.device == meta and targets.device == meta and targets.shape == (2, 4, 32, 32)
    assert task.removed_region(2, (32, 32), torch.Generator(), meta).device == meta


def test_preview_rows_are_the_original_the_corrupted_input_and_the_output():
    """Single-channel images: the figure's three rows show targets' image, inputs and outputs, per example."""
    task = ContextPrediction(ContextPrediction.Config(mask="central"))
    images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    inputs, targets = task.make_batch(images, torch.Generator())
    outputs = images * 0.5
    figure = task.preview(inputs, targets, outputs)
    axes = figure.axes
    assert len(axes) == 6
    for column in range(2):
        for row, expected in enumerate((images, inputs, outputs)):
            shown = axes[row * 2 + column].images[0].get_array()
            assert np.array_equal(np.asarray(shown), expected[column, 0].numpy())


def test_logged_geometry_counts_one_central_square_or_the_configured_blocks():
    """``geometry`` (logged with every pretrain run): the side of each removed square in pixels, how many squares
    (one for the central mask, ``blocks`` otherwise) and the largest share of the image they can cover, to 3
    decimals (random blocks may overlap, so their share is at most this)."""
    central = ContextPrediction(ContextPrediction.Config(mask="central", central_fraction=0.5, blocks=7))
    assert central.geometry(64) == {"removed_px": 32, "squares": 1, "removed_share_max": 0.25}
    blocks = ContextPrediction(ContextPrediction.Config(mask="random_blocks", blocks=3, block_fraction=0.3))
    assert blocks.geometry(30) == {"removed_px": 9, "squares": 3, "removed_share_max": 0.27}
    single = ContextPrediction(ContextPrediction.Config(blocks=1, block_fraction=0.3))
    assert single.geometry(7) == {"removed_px": 2, "squares": 1, "removed_share_max": 0.082}  # 4 / 49
