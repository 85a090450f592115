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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.patch_grid import CELLS, PatchGrid, PatchGridTask, crop_patches

CENTRE_CELL = 4
#: Label -> grid cell of the neighbour (the eight cells around the centre, row-major).
NEIGHBOUR_CELLS = tuple(cell for cell in range(9) if cell != CENTRE_CELL)
#: Label -> (row, column) offset of the neighbour from the centre patch, in grid cells.
NEIGHBOUR_OFFSETS = tuple((CELLS[cell][0] - 1, CELLS[cell][1] - 1) for cell in NEIGHBOUR_CELLS)
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
    grid: PatchGrid, batch: int, height: int, width: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners (B, 2, 2) of (centre, neighbour) patches and labels (B,) indexing :data:`NEIGHBOUR_OFFSETS`."""
    corners = grid.sample_corners(batch, height, width, generator, device)
    labels = torch.randint(0, len(NEIGHBOUR_CELLS), (batch,), generator=generator, device=device)
    cells = torch.tensor(NEIGHBOUR_CELLS, device=device)[labels]
    rows = torch.arange(batch, device=device)
    return torch.stack([corners[:, CENTRE_CELL], corners[rows, cells]], dim=1), labels


@PRETEXT_TASKS.register("relative_position")
class RelativePosition(PatchGridTask):
    """Predict where a neighbouring patch lies relative to the centre patch (8 classes; Doersch et al. 2015)."""

    label = "RP"
    inputs_per_example = 2

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
        return len(NEIGHBOUR_CELLS)

    def class_name(self, index: int) -> str:
        return _DIRECTION_NAMES[NEIGHBOUR_OFFSETS[index]]

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = images.shape
        grid = self.grid(height, width)
        corners, labels = sample_pairs(grid, batch, height, width, generator, images.device)
        return crop_patches(images, corners, grid.patch), labels
