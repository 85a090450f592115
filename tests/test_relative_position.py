"""Relative position (Doersch et al. 2015): labels, patch placement, and that the crops are the image's."""

from __future__ import annotations

import torch

from ssl_medbench.pretext_tasks.patch_grid import CELLS, crop_patches
from ssl_medbench.pretext_tasks.relative_position import (
    CENTRE_CELL,
    NEIGHBOUR_CELLS,
    NEIGHBOUR_OFFSETS,
    RelativePosition,
    sample_pairs,
)


def test_labels_and_neighbour_offsets_are_a_bijection_over_the_eight_positions():
    assert len(NEIGHBOUR_OFFSETS) == 8 and len(set(NEIGHBOUR_OFFSETS)) == 8
    assert set(NEIGHBOUR_OFFSETS) == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)} - {(0, 0)}
    assert CENTRE_CELL not in NEIGHBOUR_CELLS and CELLS[CENTRE_CELL] == (1, 1)
    task = RelativePosition()
    assert task.num_classes == 8 and len({task.class_name(label) for label in range(8)}) == 8


def test_the_neighbour_lies_in_the_labelled_direction_and_never_overlaps_the_centre():
    task = RelativePosition()
    grid = task.grid(64, 64)
    corners, labels = sample_pairs(grid, 4000, (64, 64), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert set(labels.tolist()) == set(range(8))
    offsets = torch.tensor(NEIGHBOUR_OFFSETS)[labels]
    delta = corners[:, 1] - corners[:, 0]
    # the centre-to-neighbour shift points in the labelled direction: one pitch away, give or take the jitter
    pitch = grid.patch + grid.gap
    assert ((delta - offsets * pitch).abs() <= grid.jitter).all()
    # never overlapping: separated by at least a full patch along some axis
    assert (delta.abs() >= grid.patch).any(dim=1).all()


def test_make_batch_returns_the_centre_and_neighbour_crops_of_each_image():
    task = RelativePosition()
    images = torch.randn(16, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    inputs, labels = task.make_batch(images, torch.Generator().manual_seed(5))
    corners, expected_labels = sample_pairs(
        task.grid(64, 64), 16, (64, 64), torch.Generator().manual_seed(5), images.device
    )
    assert torch.equal(labels, expected_labels)
    assert torch.equal(inputs, crop_patches(images, corners, task.grid(64, 64).patch))


def test_the_siamese_head_sees_the_crops_in_order():
    """Swapping centre and neighbour must change the prediction: features are concatenated, not pooled."""
    from ssl_medbench.networks import EncoderConfig, create_encoder
    from ssl_medbench.pretext_tasks.base import PretextNetwork

    task = RelativePosition()
    torch.manual_seed(0)
    encoder = create_encoder(EncoderConfig(kwargs={"channels": [8, 16, 32]}), 4)
    network = PretextNetwork(task, encoder, None, task.build_head(32, 4)).eval()
    inputs, _ = task.make_batch(torch.randn(4, 4, 64, 64), torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(network(inputs), network(inputs.flip(1)))


def test_pairs_and_crops_are_made_on_the_images_device():
    """The meta device stands in for an accelerator: nothing may be built on the CPU and mixed in."""
    meta = torch.device("meta")
    task = RelativePosition()
    corners, labels = sample_pairs(task.grid(64, 64), 4, (64, 64), torch.Generator(), meta)
    assert corners.device == meta and labels.device == meta and corners.shape == (4, 2, 2)
    inputs, targets = task.make_batch(torch.empty(4, 3, 64, 64, device=meta), torch.Generator())
    assert inputs.device == meta and targets.device == meta and inputs.shape == (4, 2, 3, 16, 16)
