"""``context_restoration`` (CR): Chen et al. 2019, "Self-supervised learning for medical image analysis using image context restoration".

Algorithm 1 (image context disordering): repeat T times: pick two random, non-overlapping patches
of the image and swap them. The network restores the original image from the disordered one with
an L2 loss. The intensity distribution is unchanged (a swap only moves pixels), which the paper
argues makes the features better than inpainting's. Adapted to multi-channel MR patches: a swap moves
all channels together. Transfers the encoder and the reconstruction (decoder) part, which is the
segmentation U-Net's decoder (paper Fig. 3, first row); with ``decoder: deconv`` (Fig. 3, second
row, for classification downstream tasks) only the encoder transfers.

Defaults: T = 10 swaps of 8x8 patches on 64x64 images (the paper tunes both per dataset; both are
configurable). Every image of the batch gets its own patches, drawn at once for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pretext_tasks import PRETEXT_TASKS
from pretext_tasks.base import ReconstructionTask

_MAX_REJECTION_ROUNDS = 1000


def check_patch_pairs_fit(patch: int, height: int, width: int) -> None:
    """Raise ValueError unless two disjoint ``patch`` x ``patch`` squares fit in a ``height`` x ``width`` image."""
    if patch < 1 or (2 * patch > height and 2 * patch > width) or patch > min(height, width):
        raise ValueError(f"two disjoint {patch}x{patch} patches do not fit in a {height}x{width} image")


def sample_disjoint_patch_pairs(
    batch: int, height: int, width: int, patch: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners (batch, 2) of two non-overlapping ``patch`` x ``patch`` squares per image.

    Rejection sampling on the whole batch: pairs that overlap are redrawn (both corners) until none does.
    """
    check_patch_pairs_fit(patch, height, width)
    high = torch.tensor([height - patch + 1, width - patch + 1], device=device)

    def draw(count: int) -> torch.Tensor:
        return (torch.rand(count, 2, generator=generator, device=device) * high).long()

    first, second = draw(batch), draw(batch)
    for _ in range(_MAX_REJECTION_ROUNDS):
        overlap = ((first - second).abs() < patch).all(dim=1)
        count = int(overlap.sum())
        if count == 0:
            return first, second
        first[overlap], second[overlap] = draw(count), draw(count)
    raise RuntimeError(f"could not place disjoint {patch}x{patch} patches in {height}x{width} images")


def swap_patches(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor, patch: int) -> torch.Tensor:
    """A copy of ``images`` (B, C, H, W) with the patch at ``first[b]`` swapped with the one at ``second[b]``."""
    batch = images.shape[0]
    offsets = torch.arange(patch, device=images.device)
    b = torch.arange(batch, device=images.device)[:, None, None]

    def index(corner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = (corner[:, 0, None] + offsets)[:, :, None]
        cols = (corner[:, 1, None] + offsets)[:, None, :]
        return b, rows, cols

    out = images.clone()
    channels_last = images.permute(0, 2, 3, 1)
    swapped = out.permute(0, 2, 3, 1)
    swapped[index(first)] = channels_last[index(second)]
    swapped[index(second)] = channels_last[index(first)]
    return out


@PRETEXT_TASKS.register("context_restoration")
class ContextRestoration(ReconstructionTask):
    """Restore images whose context was disordered by T random patch swaps (Chen et al. 2019, Algorithm 1)."""

    label = "CR"

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        #: T in Algorithm 1: number of swap iterations per image (0 leaves the image unchanged).
        iterations: int = 10
        #: Side of the square patches, in pixels.
        patch_size: int = 8

    def __init__(self, config: "ContextRestoration.Config | None" = None):
        super().__init__(config)
        if self.config.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.config.iterations}")
        if self.config.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.config.patch_size}")

    def check_image_size(self, height: int, width: int) -> None:
        check_patch_pairs_fit(self.config.patch_size, height, width)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        corrupted = images
        batch, _, height, width = images.shape
        for _ in range(self.config.iterations):
            first, second = sample_disjoint_patch_pairs(batch, height, width, self.config.patch_size, generator, images.device)
            corrupted = swap_patches(corrupted, first, second, self.config.patch_size)
        return corrupted, images

