"""The 3x3 patch grid of relative-position and jigsaw pretraining, sampled for a whole batch at once.

Both Doersch et al. (2015) and Noroozi & Favaro (2016) cut nine patches from a 3x3 grid placed at a
random position in the image, with a gap between neighbouring patches and a random jitter of every
patch, so that the network cannot solve the task from continuing edges or textures. Here a grid of
``patch`` pixel squares has pitch ``patch + gap``; each patch is shifted by an independent random
0..``jitter`` pixels on each axis; the grid's origin is random within the image. Adjacent patches are
therefore at least ``gap - jitter`` pixels apart (never overlapping, since ``jitter <= gap``).
Sizes are given as fractions of the image side so that they scale with the pretraining patch size.

3D form (Taleb et al. 2020, "3D self-supervised methods for medical imaging"): a 3x3x3 grid of cubes in a volume,
with the same gap and jitter along every axis.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks.base import ClassificationTask
from ssl_medbench.pretext_tasks.box_indices import box_voxels


def grid_cells(spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """The cells of a 3x3 (3x3x3) grid as their index along each axis, in raster order; the middle one is the centre."""
    return tuple(itertools.product(range(3), repeat=spatial_dims))


#: (row, column) of the nine cells in row-major order; cell 4 is the centre.
CELLS = grid_cells(2)


@dataclass(frozen=True)
class PatchGrid:
    """A 3x3 grid of ``patch`` x ``patch`` squares, ``gap`` pixels apart, each jittered by 0..``jitter`` pixels."""

    patch: int
    gap: int
    jitter: int

    @classmethod
    def from_fractions(cls, side: int, patch: float, gap: float, jitter: float) -> PatchGrid:
        """Pixel sizes ``floor(fraction * side)`` for an image of ``side`` pixels (the shorter side)."""
        return cls(int(patch * side), int(gap * side), int(jitter * side))

    @property
    def extent(self) -> int:
        """Pixels the grid spans along each axis, jitter included."""
        return 3 * self.patch + 2 * self.gap + self.jitter

    def check_fits(self, height: int, width: int, spatial_dims: int = 2) -> None:
        """ValueError unless the grid fits a ``height`` x ``width`` image (in 3D: a cube of that face)."""
        image = "x".join(map(str, (height,) * (spatial_dims - 2) + (height, width)))
        image = f"{image} {'image' if spatial_dims == 2 else 'volume'}"
        if self.patch < 1:
            raise ValueError(f"patches would be {self.patch} pixels wide on a {image}; increase the patch fraction")
        if self.jitter > self.gap:
            raise ValueError(
                f"jitter ({self.jitter} px) must not exceed the gap ({self.gap} px), or neighbouring patches could overlap"
            )
        if self.extent > min(height, width):
            grid = "x".join(["3"] * spatial_dims)
            raise ValueError(
                f"a {grid} grid of {self.patch}-pixel patches with {self.gap}-pixel gaps and {self.jitter}-pixel jitter "
                f"spans {self.extent} pixels, more than the {image}"
            )

    def sample_corners(
        self, batch: int, sides: Sequence[int], generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """First corners (batch, 3**d, d) of the patches of each image of ``sides`` (d of them), cells in
        :func:`grid_cells` order."""
        for side in sides[:-1]:
            self.check_fits(side, sides[-1], len(sides))
        dims = len(sides)
        room = torch.tensor([side - self.extent + 1 for side in sides], device=device)
        origin = (torch.rand(batch, 1, dims, generator=generator, device=device) * room).long()
        cells = torch.tensor(grid_cells(dims), device=device) * (self.patch + self.gap)
        jitter = torch.randint(0, self.jitter + 1, (batch, 3**dims, dims), generator=generator, device=device)
        return origin + cells + jitter


def crop_patches(images: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """Crops (B, K, C, size, ...) of side ``size`` of ``images`` (B, C, *spatial) at first corners ``corners``
    (B, K, len(spatial)), gathered at once."""
    batch, channels, *sides = images.shape
    voxels = box_voxels(corners, size, sides).reshape(batch, 1, -1)  # flat index of every crop voxel
    crops = images.reshape(batch, channels, -1).gather(2, voxels.expand(batch, channels, voxels.shape[-1]))
    return crops.view(batch, channels, corners.shape[1], *(size,) * len(sides)).transpose(1, 2)


class PatchGridTask(ClassificationTask):
    """A classification pretext task on crops of a :class:`PatchGrid`; its ``Config`` has
    ``patch_fraction``, ``gap_fraction`` and ``jitter_fraction`` (fractions of the image side)."""

    FRACTIONS = ("patch_fraction", "gap_fraction", "jitter_fraction")

    def __init__(self, config: ClassificationTask.Config | None = None):
        super().__init__(config)
        for name in self.FRACTIONS:
            if not 0 <= getattr(self.config, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self.config, name)}")

    def grid(self, height: int, width: int) -> PatchGrid:
        return PatchGrid.from_fractions(min(height, width), *(getattr(self.config, name) for name in self.FRACTIONS))

    def check_image_size(self, height: int, width: int) -> None:
        self.grid(height, width).check_fits(height, width, self.spatial_dims)

    def geometry(self, side: int) -> dict[str, int | float]:
        """Patch side, gap and jitter in pixels, and how many pixels the jittered 3x3 grid spans."""
        grid = self.grid(side, side)
        return {"patch_px": grid.patch, "gap_px": grid.gap, "jitter_px": grid.jitter, "grid_px": grid.extent}

    def crop_shape(self, *sides: int) -> tuple[int, ...]:
        return (self.grid(*sides[-2:]).patch,) * len(sides)
