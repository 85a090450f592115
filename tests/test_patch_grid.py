"""The 3x3 patch grid shared by relative position and jigsaw: placement, spacing, cropping."""

from __future__ import annotations

import pytest
import torch

from ssl_medbench.pretext_tasks.patch_grid import CELLS, PatchGrid, crop_patches


def test_corners_keep_every_patch_inside_the_image_in_its_cell_and_apart_from_its_neighbours():
    grid = PatchGrid(patch=10, gap=5, jitter=3)
    corners = grid.sample_corners(2000, (50, 60), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert corners.shape == (2000, 9, 2)
    assert corners.min() >= 0
    assert (corners[..., 0] + 10 <= 50).all() and (corners[..., 1] + 10 <= 60).all()
    origin = corners[:, 0]
    for index, (row, col) in enumerate(CELLS):
        offset = corners[:, index] - origin - torch.tensor([row, col]) * 15
        assert offset.min() >= -3 and offset.max() <= 3  # both jittered by 0..3 relative to cell 0
    # horizontally and vertically adjacent patches are at least gap - jitter = 2 pixels apart
    horizontal = corners[:, 1, 1] - (corners[:, 0, 1] + 10)
    vertical = corners[:, 3, 0] - (corners[:, 0, 0] + 10)
    assert horizontal.min() >= 2 and vertical.min() >= 2
    # the grid is placed anywhere the extent allows, and every jitter value occurs
    assert origin[:, 0].min() <= 1 and (corners[:, 8, 0] + 10).max() >= 49
    assert set((corners[:, 4] - corners[:, 0] - 15).flatten().tolist()) == set(range(-3, 4))


def test_fractions_scale_with_the_image_side():
    assert PatchGrid.from_fractions(64, 0.25, 0.1, 0.05) == PatchGrid(16, 6, 3)
    assert PatchGrid.from_fractions(128, 0.25, 0.1, 0.05) == PatchGrid(32, 12, 6)


@pytest.mark.parametrize(
    "grid, message",
    [
        (PatchGrid(0, 1, 0), "0 pixels wide"),
        (PatchGrid(8, 2, 3), "must not exceed the gap"),
        (PatchGrid(20, 4, 2), "spans 70 pixels"),
    ],
)
def test_grids_that_do_not_fit_are_refused(grid, message):
    with pytest.raises(ValueError, match=message):
        grid.check_fits(64, 64)


def test_crop_patches_equals_slicing():
    images = torch.randn(3, 2, 20, 24, generator=torch.Generator().manual_seed(0))
    corners = torch.tensor([[[0, 0], [5, 7]], [[12, 16], [3, 1]], [[15, 19], [0, 19]]])
    crops = crop_patches(images, corners, 5)
    assert crops.shape == (3, 2, 2, 5, 5)
    for b in range(3):
        for k in range(2):
            r, c = corners[b, k].tolist()
            assert torch.equal(crops[b, k], images[b, :, r : r + 5, c : c + 5])


def test_the_grid_reaches_both_far_edges_of_a_non_square_image():
    """The origin is uniform over every placement that fits, along rows and along columns."""
    grid = PatchGrid(patch=10, gap=5, jitter=3)
    corners = grid.sample_corners(2000, (50, 60), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (corners[:, 8] + 10).amax(dim=0).tolist() == [50, 60]
    assert corners[:, 0].amin(dim=0).tolist() == [0, 0]


def test_one_pixel_patches_and_patches_that_exactly_fill_the_image_are_accepted():
    PatchGrid(patch=1, gap=1, jitter=0).check_fits(64, 64)
    PatchGrid(patch=20, gap=2, jitter=0).check_fits(64, 70)  # spans exactly 64 pixels


def test_a_patch_fraction_of_the_whole_side_is_refused():
    from ssl_medbench.pretext_tasks.relative_position import RelativePosition

    with pytest.raises(ValueError, match="patch_fraction"):
        RelativePosition(RelativePosition.Config(patch_fraction=1.0))


def test_corners_and_crops_are_made_on_the_requested_device():
    """The meta device stands in for an accelerator: nothing may be built on the CPU and mixed in."""
    meta = torch.device("meta")
    corners = PatchGrid(patch=10, gap=5, jitter=3).sample_corners(4, (50, 60), torch.Generator(), meta)
    assert corners.device == meta and corners.shape == (4, 9, 2)
    crops = crop_patches(torch.empty(4, 2, 50, 60, device=meta), corners, 10)
    assert crops.device == meta and crops.shape == (4, 9, 2, 10, 10)
