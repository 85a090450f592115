"""``context_prediction`` (CP): Pathak et al. 2016, "Context encoders: feature learning by inpainting".

A region of the image is removed (set to ``fill_value``) and the encoder + decoder predict its
content; the L2 loss is taken over the removed region, plus ``outside_weight`` times the L2 loss
elsewhere (0 by default, Pathak's masked reconstruction loss; the adversarial term is not used, as in
Chen et al. 2019's comparison). Two of Pathak's region shapes: ``central``, a centred square whose
side is ``central_fraction`` of the image side (Pathak: half), and ``random_blocks``, ``blocks``
squares of side ``block_fraction`` at random, possibly overlapping places (Pathak: covering up to a
quarter of the image; ``blocks: 1`` is the single removed patch of Chen et al.'s Fig. 1c). Pathak's
third shape, random segmentation-mask regions, needs natural-image masks and is not offered.

Adapted for medical images: every channel (MR modality) is removed in the same region, and the fill
value 0 is the mean intensity of z-scored images (Pathak filled with the dataset mean). Transfers the
encoder and, with the default U-Net decoder, the decoder (Chen et al. Section 2).

Targets are (B, C + 1, H, W): the original image and, as the last channel, the removed-region mask
(1 = removed), so that the loss knows where to look.

3D form: the removed regions are cubes (a centred cube, or ``blocks`` cubes at random places) of the same fractions
of the volume's side; targets are (B, C + 1, D, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import BatchSpec, ReconstructionTask, images_and_mask_spec
from ssl_medbench.pretext_tasks.box_indices import box_masks_at

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MASK_SHAPES = ("random_blocks", "central")


def central_mask(batch: int, sides: Sequence[int], side: int, device: torch.device) -> torch.Tensor:
    """(B, *sides) bool: a centred box of side ``side`` in every image of ``sides`` (height, width; or depth, height,
    width)."""
    mask = torch.zeros(batch, *sides, dtype=torch.bool, device=device)
    mask[(slice(None), *(slice((extent - side) // 2, (extent - side) // 2 + side) for extent in sides))] = True
    return mask


def random_block_mask(
    batch: int, sides: Sequence[int], side: int, blocks: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(B, *sides) bool: the union of ``blocks`` boxes of side ``side`` at uniformly random places per image."""
    room = torch.tensor([extent - side + 1 for extent in sides], device=device)
    corners = (torch.rand(batch, blocks, len(sides), generator=generator, device=device) * room).long()
    return box_masks_at(corners, corners + side, sides).any(dim=1)


@PRETEXT_TASKS.register("context_prediction")
class ContextPrediction(ReconstructionTask):
    """Inpaint a removed region from its context (Pathak et al. 2016), L2 loss on the removed region."""

    label = "CP"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        #: "random_blocks" or "central".
        mask: str = "random_blocks"
        #: Side of the central square, fraction of the image side.
        central_fraction: float = 0.5
        #: Number of random squares removed per image.
        blocks: int = 4
        #: Side of each random square, fraction of the image side.
        block_fraction: float = 0.25
        #: Value written into the removed region (0 = the mean of z-scored images).
        fill_value: float = 0.0
        #: Weight of the L2 loss outside the removed region (the removed region has weight 1).
        outside_weight: float = 0.0

    def __init__(self, config: ContextPrediction.Config | None = None):
        super().__init__(config)
        config = self.config
        if config.mask not in MASK_SHAPES:
            raise ValueError(f"mask must be one of {', '.join(MASK_SHAPES)}, got {config.mask!r}")
        for name in ("central_fraction", "block_fraction"):
            if not 0 < getattr(config, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(config, name)}")
        if config.blocks < 1:
            raise ValueError(f"blocks must be >= 1, got {config.blocks}")
        if config.outside_weight < 0:
            raise ValueError(f"outside_weight must be >= 0, got {config.outside_weight}")

    def _side(self, height: int, width: int) -> int:
        fraction = self.config.central_fraction if self.config.mask == "central" else self.config.block_fraction
        return int(fraction * min(height, width))

    def geometry(self, side: int) -> dict[str, int | float]:
        """Side of each removed square (cube) in pixels, how many, and the share of the image they cover at most."""
        removed, count = self._side(side, side), 1 if self.config.mask == "central" else self.config.blocks
        dims = self.spatial_dims
        return {
            "removed_px": removed,
            "squares": count,
            "removed_share_max": round(count * removed**dims / side**dims, 3),
        }

    def check_image_size(self, height: int, width: int) -> None:
        if self._side(height, width) < 1:
            raise ValueError(f"the removed region would be empty on {height}x{width} images; increase its fraction")

    def removed_region(
        self, batch: int, sides: Sequence[int], generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """(B, *sides) bool mask of the voxels to remove."""
        shortest = min(sides)
        self.check_image_size(shortest, shortest)
        side = self._side(shortest, shortest)
        if self.config.mask == "central":
            return central_mask(batch, sides, side, device)
        return random_block_mask(batch, sides, side, self.config.blocks, generator, device)

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        return images_and_mask_spec(images_shape)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.removed_region(images.shape[0], tuple(images.shape[2:]), generator, images.device)[:, None]
        inputs = images.masked_fill(mask, self.config.fill_value)
        return inputs, torch.cat([images, mask.to(images.dtype)], dim=1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted mean squared error: sum(w * (output - image)^2) / (C * sum(w)), w = 1 removed, ``outside_weight`` elsewhere."""
        images, mask = targets[:, :-1], targets[:, -1:]
        weights = mask + self.config.outside_weight * (1 - mask)
        squared = (outputs - images).pow(2) * weights
        removed = (squared * mask).sum() / (mask.sum() * images.shape[1]).clamp_min(1)
        return {
            "loss": squared.sum() / (weights.sum() * images.shape[1]).clamp_min(1e-12),
            "removed_region_mse": removed,
        }

    def preview(self, inputs: torch.Tensor, targets: torch.Tensor, outputs: torch.Tensor) -> Figure:
        return super().preview(inputs, targets[:, :-1], outputs)
