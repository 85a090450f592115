"""Random data augmentation of whole training batches on their device: the "+AG" of Chen et al. 2019's RD+AG baseline.

Per example: random horizontal and vertical flips, a rotation of up to ``rotation_degrees`` and a
zoom by a factor in [1 - ``scale``, 1 + ``scale``] (one affine resampling, bilinear for images,
nearest for label maps, zeros outside), then per channel an intensity scale in
[1 - ``intensity_scale``, 1 + ``intensity_scale``] and shift in [-``intensity_shift``, ``intensity_shift``]
(z-score units), then Gaussian noise of standard deviation ``noise_std``. The paper does not list its
augmentations; these are the usual ones for 2D MR patches, each configurable and switchable off (0).
All randomness comes from the generator passed in.

On volumes (B, C, X, Y, Z): flips along each of the three axes, the rotation in the axial (x, y) plane, the zoom on
all three axes (one trilinear resampling), then the same intensity changes and noise, the augmentations of the 3D
U-Net (Cicek et al. 2016) kept to what the 2D form does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

#: How a downstream task's training targets follow a geometric transform of its images:
#: "dense" targets (B, H, W) label maps are resampled with the images; "invariant" targets (class labels) are kept.
TargetGeometry = Literal["dense", "invariant"]


@dataclass(frozen=True)
class AugmentationConfig:
    flip: bool = True
    rotation_degrees: float = 10.0
    scale: float = 0.1
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    noise_std: float = 0.05

    def check(self) -> None:
        for name in ("rotation_degrees", "scale", "intensity_scale", "intensity_shift", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.rotation_degrees > 180:
            raise ValueError(f"rotation_degrees must be <= 180, got {self.rotation_degrees}")
        for name in ("scale", "intensity_scale"):
            if getattr(self, name) >= 1:
                raise ValueError(f"{name} must be < 1, got {getattr(self, name)}")


def _uniform(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


class BatchAugmentation:
    """``augment(images, targets, generator, target_geometry)`` -> augmented (images, targets)."""

    def __init__(self, config: AugmentationConfig):
        config.check()
        self.config = config

    @property
    def geometric(self) -> bool:
        return self.config.flip or self.config.rotation_degrees > 0 or self.config.scale > 0

    def affine(
        self, batch: int, generator: torch.Generator, device: torch.device, spatial_dims: int = 2
    ) -> torch.Tensor:
        """(B, 2, 3) sampling matrices for ``F.affine_grid`` (3D: (B, 3, 4)): output -> input coordinates, about the
        image centre. In 3D the grid's coordinates are (z, y, x): the rotation turns (y, x), z only flips and zooms."""
        config = self.config
        dims = spatial_dims
        flips = torch.ones(batch, dims, device=device)
        if config.flip:
            flips = torch.where(torch.rand(batch, dims, generator=generator, device=device) < 0.5, -1.0, 1.0)
        angle = _uniform(
            (batch,), -math.radians(config.rotation_degrees), math.radians(config.rotation_degrees), generator, device
        )
        zoom = _uniform((batch,), 1 - config.scale, 1 + config.scale, generator, device)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.zeros(batch, dims, dims + 1, device=device)
        if dims == 3:
            theta[:, 0, 0] = flips[:, 0] / zoom
        a, b = dims - 2, dims - 1  # the rotated plane's two grid coordinates
        theta[:, a, a], theta[:, a, b] = cos * flips[:, a], -sin * flips[:, b]
        theta[:, b, a], theta[:, b, b] = sin * flips[:, a], cos * flips[:, b]
        return theta

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, target_geometry: TargetGeometry
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if target_geometry not in ("dense", "invariant"):
            raise ValueError(f"target_geometry must be 'dense' or 'invariant', got {target_geometry!r}")
        batch, channels = images.shape[:2]
        dims = images.ndim - 2
        device = images.device
        config = self.config
        if self.geometric:
            theta = self.affine(batch, generator, device, dims)
            grid = F.affine_grid(theta, list(images.shape), align_corners=False)
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if target_geometry == "dense":
                resampled = F.grid_sample(
                    targets[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
                )
                targets = resampled[:, 0].round().to(targets.dtype)
        per_channel = (batch, channels, *(1,) * dims)
        gain = _uniform(per_channel, 1 - config.intensity_scale, 1 + config.intensity_scale, generator, device)
        shift = _uniform(per_channel, -config.intensity_shift, config.intensity_shift, generator, device)
        images = images * gain + shift
        if config.noise_std > 0:
            images = images + config.noise_std * torch.randn(images.shape, generator=generator, device=device)
        return images, targets
