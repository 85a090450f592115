"""``relative_position`` (RP): Doersch et al. 2015, "Unsupervised visual representation learning by context prediction".

A 3x3 grid of patches with gaps and jitter is placed at random in the image (:mod:`pretext_tasks.patch_grid`);
the network sees the centre patch and one of its eight neighbours, both through the shared
(siamese) encoder, and predicts which of the eight positions the neighbour came from
(cross-entropy). Only the encoder transfers: the downstream U-Net decoder starts random
(Chen et al. 2019, Section 2, "weights learned in the RP method can only initialise the analysis part").

Adapted for medical images as Chen et al. did: the patches come from the same 2D pretraining patches
(64x64 axial MR slices for BraTS) that the other tasks see, and all channels (MR modalities) move
together. Doersch's colour-dropping against chromatic aberration is not needed (MR channels are
separate acquisitions, not lens colours). Patch, gap and jitter are fractions of the image side:
the defaults give 16-pixel patches, 6-pixel gaps and 0-3 pixels of jitter on 64x64 images, the
largest patches that fit with Doersch's gap-and-jitter design (his 96-pixel patches, 48-pixel gaps
and 7-pixel jitter do not fit a 64-pixel image).

3D form (Taleb et al. 2020, 3D relative patch location): the centre cube of a 3x3x3 grid and one of its 26
neighbours; 26 classes, named by their offset from the centre along the volume's three axes (x, y, z).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.patch_grid import PatchGrid, PatchGridTask, crop_patches, grid_cells


def centre_cell(spatial_dims: int) -> int:
    """Index of the centre of the 3x3 (3x3x3) grid: 4 (13)."""
    return (3**spatial_dims - 1) // 2


def neighbour_cells(spatial_dims: int) -> tuple[int, ...]:
    """Label -> grid cell of the neighbour: the 8 (26) cells around the centre, in raster order."""
    return tuple(cell for cell in range(3**spatial_dims) if cell != centre_cell(spatial_dims))


def neighbour_offsets(spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """Label -> offset of the neighbour from the centre patch, in grid cells per axis."""
    cells = grid_cells(spatial_dims)
    return tuple(tuple(index - 1 for index in cells[cell]) for cell in neighbour_cells(spatial_dims))


CENTRE_CELL = centre_cell(2)
#: Label -> grid cell of the neighbour (the eight cells around the centre, row-major).
NEIGHBOUR_CELLS = neighbour_cells(2)
#: Label -> (row, column) offset of the neighbour from the centre patch, in grid cells.
NEIGHBOUR_OFFSETS = neighbour_offsets(2)
_DIRECTION_NAMES = {
    (-1, -1): "top-left",
    (-1, 0): "top",
    (-1, 1): "top-right",
    (0, -1): "left",
    (0, 1): "right",
    (1, -1): "bottom-left",
    (1, 0): "bottom",
    (1, 1): "bottom-right",
}


def sample_pairs(
    grid: PatchGrid, batch: int, sides: Sequence[int], generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners (B, 2, d) of (centre, neighbour) patches in images of ``sides`` (d of them) and labels (B,) indexing
    :func:`neighbour_offsets`."""
    dims = len(sides)
    corners = grid.sample_corners(batch, sides, generator, device)
    neighbours = neighbour_cells(dims)
    labels = torch.randint(0, len(neighbours), (batch,), generator=generator, device=device)
    cells = torch.tensor(neighbours, device=device)[labels]
    rows = torch.arange(batch, device=device)
    return torch.stack([corners[:, centre_cell(dims)], corners[rows, cells]], dim=1), labels


@PRETEXT_TASKS.register("relative_position")
class RelativePosition(PatchGridTask):
    """Predict where a neighbouring patch lies relative to the centre patch (8 classes; Doersch et al. 2015)."""

    label = "RP"
    inputs_per_example = 2
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config:
        #: Patch side as a fraction of the image side.
        patch_fraction: float = 0.25
        #: Gap between neighbouring patches (before jitter), fraction of the image side.
        gap_fraction: float = 0.1
        #: Maximum random shift of each patch per axis, fraction of the image side; at most the gap.
        jitter_fraction: float = 0.05

    @property
    def num_classes(self) -> int:
        return len(neighbour_cells(self.spatial_dims))

    def class_name(self, index: int) -> str:
        offset = neighbour_offsets(self.spatial_dims)[index]
        return _DIRECTION_NAMES[offset] if len(offset) == 2 else "x {:+d} y {:+d} z {:+d}".format(*offset)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        sides = tuple(images.shape[2:])
        grid = self.grid(*sides[-2:])
        corners, labels = sample_pairs(grid, images.shape[0], sides, generator, images.device)
        return crop_patches(images, corners, grid.patch), labels
