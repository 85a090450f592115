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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import ReconstructionTask

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


def disordered_pixels(
    batch: int,
    height: int,
    width: int,
    swaps: Sequence[tuple[torch.Tensor, torch.Tensor]],
    patch: int,
    device: torch.device,
) -> torch.Tensor:
    """Which pixel of the original image each pixel of the disordered one shows, as flat indices (batch, H*W),
    after the ``swaps`` (pairs of top-left corners (batch, 2)) applied in order."""
    offsets = torch.arange(patch, device=device)
    source = torch.arange(height * width, device=device).repeat(batch, 1)

    def pixels(corner: torch.Tensor) -> torch.Tensor:
        rows, cols = corner[:, 0, None] + offsets, corner[:, 1, None] + offsets
        return (rows[:, :, None] * width + cols[:, None, :]).reshape(batch, -1)

    for first, second in swaps:
        a, b = pixels(first), pixels(second)
        shown_at_a = source.gather(1, a)
        source.scatter_(1, a, source.gather(1, b))
        source.scatter_(1, b, shown_at_a)
    return source


def gather_pixels(images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, H, W) rearranged by ``source`` (B, H*W); every channel of a pixel moves together."""
    batch, channels, height, width = images.shape
    flat = images.reshape(batch, channels, height * width)
    return flat.gather(2, source[:, None, :].expand(batch, channels, height * width)).view(
        batch, channels, height, width
    )


def swap_patches(images: torch.Tensor, first: torch.Tensor, second: torch.Tensor, patch: int) -> torch.Tensor:
    """A copy of ``images`` (B, C, H, W) with the patch at ``first[b]`` swapped with the one at ``second[b]``."""
    batch, _, height, width = images.shape
    return gather_pixels(images, disordered_pixels(batch, height, width, [(first, second)], patch, images.device))


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

    def __init__(self, config: ContextRestoration.Config | None = None):
        super().__init__(config)
        if self.config.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.config.iterations}")
        if self.config.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {self.config.patch_size}")

    def check_image_size(self, height: int, width: int) -> None:
        check_patch_pairs_fit(self.config.patch_size, height, width)

    def geometry(self, side: int) -> dict[str, int | float]:
        """Patch side in pixels, swaps (T), and the share of the image the T swaps move at most (2 T p^2 / side^2)."""
        patch, swaps = self.config.patch_size, self.config.iterations
        return {"patch_px": patch, "swaps": swaps, "moved_share_max": round(2 * swaps * patch**2 / side**2, 3)}

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = images.shape
        iterations, patch = self.config.iterations, self.config.patch_size
        if iterations == 0:
            return images.clone(), images
        # All T pairs drawn at once, applied in order to an index map, then one gather moves the pixels.
        first, second = sample_disjoint_patch_pairs(iterations * batch, height, width, patch, generator, images.device)
        swaps = list(zip(first.view(iterations, batch, 2), second.view(iterations, batch, 2)))
        return gather_pixels(images, disordered_pixels(batch, height, width, swaps, patch, images.device)), images
