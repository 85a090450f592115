"""Flat voxel indices of square (2D) or cubic (3D) boxes in a batch of images, for one vectorised gather.

Context restoration swaps boxes, relative position and jigsaw crop them: each turns the boxes' corners into the flat
(raster-order) indices of their pixels or voxels and moves them with one ``gather`` of the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def box_voxels(corners: torch.Tensor, size: int, sides: Sequence[int]) -> torch.Tensor:
    """Flat indices into an image of ``sides`` of the ``size``-sided boxes whose first corners are ``corners``
    (..., len(sides)): (..., size ** len(sides)), each box in raster order."""
    offsets = torch.arange(size, device=corners.device)
    dims = len(sides)
    flat = torch.zeros(corners.shape[:-1] + (1,) * dims, dtype=torch.long, device=corners.device)
    stride = 1
    for axis in reversed(range(dims)):
        along = corners[..., axis, None] + offsets  # (..., size)
        shape = corners.shape[:-1] + tuple(size if other == axis else 1 for other in range(dims))
        flat = flat + (along * stride).view(shape)
        stride *= sides[axis]
    return flat.flatten(-dims)


def box_masks_at(starts: torch.Tensor, stops: torch.Tensor, sides: Sequence[int]) -> torch.Tensor:
    """(B, K, *sides) bool: box k of image b covers ``starts[b, k]`` (inclusive) to ``stops[b, k]`` (exclusive) along
    each axis of an image of ``sides``; ``starts`` and ``stops`` are (B, K, len(sides))."""
    batch, boxes, dims = starts.shape
    inside = torch.ones((batch, boxes) + (1,) * dims, dtype=torch.bool, device=starts.device)
    for axis, extent in enumerate(sides):
        positions = torch.arange(extent, device=starts.device)
        along = (positions >= starts[..., axis, None]) & (positions < stops[..., axis, None])
        inside = inside & along.view(batch, boxes, *(extent if other == axis else 1 for other in range(dims)))
    return inside


def gather_voxels(images: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``images`` (B, C, *spatial) rearranged by ``source`` (B, N): output voxel i of image b shows its input voxel
    ``source[b, i]`` (N = every voxel); every channel of a voxel moves together."""
    batch, channels = images.shape[:2]
    flat = images.reshape(batch, channels, -1)
    return flat.gather(2, source[:, None, :].expand(batch, channels, source.shape[1])).view(images.shape)
