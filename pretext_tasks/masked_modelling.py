"""``masked_modelling`` (MIM): masked image modelling after SimMIM (Xie et al. 2022, "SimMIM: a simple framework for
masked image modeling", CVPR), for our CNN encoders.

The image is divided into square patches; a fixed share of them (``mask_ratio``, 0.6 as SimMIM's default) is chosen
at random per image and blanked; the network predicts the pixels of the blanked patches, and the loss is SimMIM's L1
on the masked pixels only, so the network gains nothing by copying what it sees. The OpenMind / nnssl benchmark
(Wald et al. 2025) finds masked modelling the best pretraining for segmentation, which is why it is here.

Adapted to CNNs: SimMIM replaces a masked patch's embedding by a learned token inside a vision transformer; a
convolutional encoder has no patch embedding, so masked pixels are set to 0 (the images are normalised to mean 0),
as SparK (Tian et al. 2023) does before its sparse convolutions; we use the dense encoder as it is, so the features
transfer unchanged. Patches are ``patch_fraction`` of the view's side (8 px on the 64-pixel BraTS patches, SimMIM's
32 px on 192-pixel images being a sixth). The encoder and the U-Net decoder transfer, as for context restoration.

3D form: the volume is divided into cubes and the same share of them is masked, as the 3D masked autoencoders of
OpenMind / nnssl (Wald et al. 2025) and SparK's 3D port do for CNNs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import BatchSpec, ReconstructionTask, images_and_mask_spec

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def patch_side(side: int, patch_fraction: float) -> int:
    """Patch side in pixels on a ``side``-pixel view (at least 1)."""
    return max(1, round(side * patch_fraction))


def random_patch_masks(
    batch: int, sides: Sequence[int], patch: int, ratio: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Per image of ``sides`` (height, width; or depth, height, width), ``round(ratio * cells)`` of the grid cells of
    side ``patch`` chosen uniformly without replacement, as a voxel mask (batch, 1, *sides) of 1.0 on masked voxels
    (cells cut by the border count whole)."""
    cells_per_axis = [math.ceil(side / patch) for side in sides]
    cells = math.prod(cells_per_axis)
    masked = round(ratio * cells)
    keys = torch.rand(batch, cells, generator=generator, device=device)
    chosen = torch.zeros(batch, cells, device=device)
    chosen.scatter_(1, keys.argsort(dim=1)[:, :masked], 1.0)
    grid = chosen.view(batch, 1, *cells_per_axis)
    for axis in range(len(sides)):
        grid = grid.repeat_interleave(patch, dim=2 + axis)
    return grid[(slice(None), slice(None), *(slice(0, side) for side in sides))]


@PRETEXT_TASKS.register("masked_modelling")
class MaskedModelling(ReconstructionTask):
    """Predict the pixels of randomly masked patches, L1 on the masked pixels only (SimMIM, Xie et al. 2022)."""

    label = "MIM"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        #: Share of the patches masked in every image (SimMIM: 0.6).
        mask_ratio: float = 0.6
        #: Patch side as a share of the view's side (8 px on 64-pixel views).
        patch_fraction: float = 0.125

    def __init__(self, config: MaskedModelling.Config | None = None):
        super().__init__(config)
        if not 0 < self.config.mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {self.config.mask_ratio}")
        if not 0 < self.config.patch_fraction <= 0.5:
            raise ValueError(f"patch_fraction must lie in (0, 0.5], got {self.config.patch_fraction}")

    def geometry(self, side: int) -> dict[str, int | float]:
        """Patch side in pixels, patches per image and how many of them are masked."""
        patch = patch_side(side, self.config.patch_fraction)
        patches = math.ceil(side / patch) ** self.spatial_dims
        return {"patch_px": patch, "patches": patches, "masked": round(self.config.mask_ratio * patches)}

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        """Inputs: the masked images; targets: the images with the mask as one more channel (1 on masked pixels)."""
        return images_and_mask_spec(images_shape)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        sides = tuple(images.shape[2:])
        patch = patch_side(min(sides), self.config.patch_fraction)
        mask = random_patch_masks(images.shape[0], sides, patch, self.config.mask_ratio, generator, images.device)
        return images * (1 - mask), torch.cat([images, mask.to(images.dtype)], dim=1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean absolute error over the masked pixels of every channel (SimMIM's loss)."""
        images, mask = targets[:, :-1], targets[:, -1:]
        error = ((outputs - images).abs() * mask).sum()
        return {"loss": error / (mask.sum() * images.shape[1]).clamp_min(1)}

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        return super().preview(inputs, targets[:, :-1], outputs)
