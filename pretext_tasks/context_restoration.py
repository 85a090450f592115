"""``context_restoration`` (CR): Chen et al. 2019, "Self-supervised learning for medical image analysis using image context restoration".

Algorithm 1 (image context disordering): repeat T times: pick two random, non-overlapping patches
of the image and swap them. The network restores the original image from the disordered one with
an L2 loss. The intensity distribution is unchanged (a swap only moves pixels), which the paper
argues makes the features better than inpainting's. Adapted to multi-channel MR patches: a swap moves
all channels together. Transfers the encoder and the reconstruction (decoder) part, which is the
segmentation U-Net's decoder (paper Fig. 3, first row); with ``decoder: deconv`` (Fig. 3, second
row, for classification downstream tasks) only the encoder transfers.

Defaults: T = 10 swaps of 8x8 patches on 64x64 images (the paper tunes both per dataset; both are
configurable). Every image of the batch gets its own patches; all T x B pairs are drawn at once and the
swaps applied to an index map, so a batch costs one gather of its pixels.

3D form: the same algorithm on volumes, swapping cubes of ``patch_size`` voxels (the 3D context restoration that
Zhou et al. 2021 compare Models Genesis with, and Taleb et al. 2020's suite of 3D tasks lacks); on the 3D views'
cubes the defaults are T = 10 swaps of 8-voxel cubes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import ReconstructionTask
from ssl_medbench.pretext_tasks.box_indices import box_voxels, gather_voxels

_MAX_REJECTION_ROUNDS = 1000


def _shape_text(sides: Sequence[int]) -> str:
    return "x".join(map(str, sides))


def check_patch_pairs_fit(patch: int, *sides: int) -> None:
    """Raise ValueError unless two disjoint boxes of side ``patch`` fit in an image of ``sides`` (height, width; or
    depth, height, width)."""
    if patch < 1 or all(2 * patch > side for side in sides) or patch > min(sides):
        box = _shape_text([patch] * len(sides))
        raise ValueError(f"two disjoint {box} patches do not fit in a {_shape_text(sides)} image")


def sample_disjoint_patch_pairs(
    batch: int, sides: Sequence[int], patch: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """First corners (batch, len(sides)) of two non-overlapping boxes of side ``patch`` per image of ``sides``.

    Rejection sampling on the whole batch: pairs that overlap are redrawn (both corners) until none does.
    """
    check_patch_pairs_fit(patch, *sides)
    high = torch.tensor([side - patch + 1 for side in sides], device=device)

    def draw(count: int) -> torch.Tensor:
        return (torch.rand(count, len(sides), generator=generator, device=device) * high).long()

    first, second = draw(batch), draw(batch)
    for _ in range(_MAX_REJECTION_ROUNDS):
        overlap = ((first - second).abs() < patch).all(dim=1)
        count = int(overlap.sum())
        if count == 0:
            return first, second
        first[overlap], second[overlap] = draw(count), draw(count)
    box = _shape_text([patch] * len(sides))
    raise RuntimeError(f"could not place disjoint {box} patches in {_shape_text(sides)} images")


def disordered_pixels(
    batch: int,
    sides: Sequence[int],
    swaps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    patch: int,
    device: torch.device,
) -> torch.Tensor:
    """Which voxel of the original image each voxel of the disordered one shows, as flat indices (batch, voxels),
    after the ``swaps`` (pairs of first corners (batch, len(sides))) applied in order."""
    voxels = 1
    for side in sides:
        voxels *= side
    source = torch.arange(voxels, device=device).repeat(batch, 1)
    for first, second in swaps:
        a, b = box_voxels(first, patch, sides), box_voxels(second, patch, sides)
        shown_at_a = source.gather(1, a)
        source.scatter_(1, a, source.gather(1, b))
        source.scatter_(1, b, shown_at_a)
    return source


def swap_patches(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor, patch: int) -> torch.Tensor:
    """A copy of ``images`` (B, C, *spatial) with the box at ``first[b]`` swapped with the one at ``second[b]``."""
    sides = images.shape[2:]
    return gather_voxels(images, disordered_pixels(images.shape[0], sides, [(first, second)], patch, images.device))


@PRETEXT_TASKS.register("context_restoration")
class ContextRestoration(ReconstructionTask):
    """Restore images whose context was disordered by T random patch swaps (Chen et al. 2019, Algorithm 1)."""

    label = "CR"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        #: T in Algorithm 1: number of swap iterations per image (0 leaves the image unchanged).
        iterations: int = 10
        #: Side of the square patches, in pixels.
        patch_size: int = 8

    def __init__(self, config: ContextRestoration.Config | None = None):
        super().__init__(config)
        if self.config.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.config.iterations}")
        if self.config.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.config.patch_size}")

    def check_image_size(self, height: int, width: int) -> None:
        check_patch_pairs_fit(self.config.patch_size, *(height,) * (self.spatial_dims - 2), height, width)

    def geometry(self, side: int) -> dict[str, int | float]:
        """Patch side in pixels, swaps (T), and the share of the image the T swaps move at most (2 T p^d / side^d)."""
        patch, swaps, dims = self.config.patch_size, self.config.iterations, self.spatial_dims
        return {"patch_px": patch, "swaps": swaps, "moved_share_max": round(2 * swaps * patch**dims / side**dims, 3)}

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, sides = images.shape[0], tuple(images.shape[2:])
        iterations, patch = self.config.iterations, self.config.patch_size
        if iterations == 0:
            return images.clone(), images
        # All T pairs drawn at once, applied in order to an index map, then one gather moves the voxels.
        first, second = sample_disjoint_patch_pairs(iterations * batch, sides, patch, generator, images.device)
        swaps = list(zip(first.view(iterations, batch, len(sides)), second.view(iterations, batch, len(sides))))
        return gather_voxels(images, disordered_pixels(batch, sides, swaps, patch, images.device)), images
