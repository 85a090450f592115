"""Random 2D patches from the axial slices of 3D volumes, drawn from one seeded ``torch.Generator``.

Chen et al. (2019) train the BraTS U-Net and its pretext tasks on 64x64 patches of axial slices.
A patch is centred either on a labelled (foreground) voxel, with probability ``foreground_fraction``,
or on a random point of the brain's bounding box (brain: any channel non-zero) on a random slice
that contains brain; with ``foreground_fraction`` 0 (pretraining) the labels are never read, so the patches drawn
do not depend on them; patches that would leave the volume are shifted inside it (zero-padded if the
slice is smaller than the patch).

:class:`CubeSampler` is the 3D form (the 3D U-Net's training patches, Cicek et al. 2016): cubes of ``patch_size``
voxels centred on a foreground voxel with the same probability, or else on a random point of the brain's 3D bounding
box. From the compact cache it reads only the axial slabs a cube spans, never the whole volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.compact_layout import StoredArray, read_axial_patch

_MAX_FOREGROUND_POINTS = 50_000


class _IndexedVolume:
    """A volume with precomputed places to centre patches on."""

    def __init__(self, volume: Volume, rng: np.random.Generator, with_foreground: bool):
        self.volume = volume
        #: images and labels of one compact cache entry: patches take the fast path (decided once, not per patch)
        self.compact = _compact(volume)
        brain = np.any(np.asarray(volume.images) != 0, axis=0)
        if not brain.any():
            brain = np.ones(brain.shape, bool)
        rows, cols = np.any(brain, axis=1), np.any(brain, axis=0)  # (x, z) and (y, z)
        self.brain_slices = np.flatnonzero(rows.any(axis=0))
        #: per brain slice: the brain's bounding box (x0, x1, y0, y1), inclusive
        self.boxes = [(*_extent(rows[:, z]), *_extent(cols[:, z])) for z in self.brain_slices]
        #: the brain's 3D bounding box (x0, x1, y0, y1, z0, z1), inclusive
        self.box = (*_extent(rows.any(axis=1)), *_extent(cols.any(axis=1)), *_extent(rows.any(axis=0)))
        foreground = np.argwhere(np.asarray(volume.labels) > 0) if with_foreground else np.zeros((0, 3), np.int64)
        if len(foreground) > _MAX_FOREGROUND_POINTS:
            foreground = foreground[rng.choice(len(foreground), _MAX_FOREGROUND_POINTS, replace=False)]
        self.foreground = foreground


def _extent(present: np.ndarray) -> tuple[int, int]:
    indices = np.flatnonzero(present)
    return int(indices[0]), int(indices[-1])


class PatchSampler:
    """Draws batches of (images (B, C, P, P) float32, labels (B, P, P) int64) patches."""

    def __init__(self, volumes: Sequence[Volume], patch_size: int, foreground_fraction: float = 0.0):
        if not volumes:
            raise ValueError("PatchSampler needs at least one volume")
        if not 0 <= foreground_fraction <= 1:
            raise ValueError(f"foreground_fraction must lie in [0, 1], got {foreground_fraction}")
        self.patch_size = patch_size
        self.foreground_fraction = foreground_fraction
        rng = np.random.default_rng(0)  # only thins very large foreground sets, identically every run
        self.volumes = [_IndexedVolume(volume, rng, foreground_fraction > 0) for volume in volumes]
        self.channels = volumes[0].images.shape[0]

    def _randint(self, high: int, generator: torch.Generator) -> int:
        return int(torch.randint(high, (1,), generator=generator))

    def _centre(self, indexed: _IndexedVolume, generator: torch.Generator) -> tuple[int, int, int]:
        use_foreground = (
            len(indexed.foreground) > 0 and float(torch.rand(1, generator=generator)) < self.foreground_fraction
        )
        if use_foreground:
            x, y, z = indexed.foreground[self._randint(len(indexed.foreground), generator)]
            return int(x), int(y), int(z)
        return self._brain_centre(indexed, generator)

    def _brain_centre(self, indexed: _IndexedVolume, generator: torch.Generator) -> tuple[int, int, int]:
        """A random point of the brain's bounding box on a random slice that contains brain."""
        index = self._randint(len(indexed.brain_slices), generator)
        x0, x1, y0, y1 = indexed.boxes[index]
        return (
            x0 + self._randint(x1 - x0 + 1, generator),
            y0 + self._randint(y1 - y0 + 1, generator),
            int(indexed.brain_slices[index]),
        )

    def _window(self, position: int, extent: int) -> slice:
        """The patch's span along an axis of ``extent`` voxels around ``position``, shifted inside the volume."""
        start = min(max(position - self.patch_size // 2, 0), max(extent - self.patch_size, 0))
        return slice(start, min(start + self.patch_size, extent))

    def _extract(
        self, indexed: _IndexedVolume, centre: tuple[int, int, int], images_out: np.ndarray, labels_out: np.ndarray
    ) -> None:
        """Write the patch around ``centre`` into ``images_out`` (C, P, P) and ``labels_out`` (P, P), both zeros."""
        images, labels = indexed.volume.images, indexed.volume.labels
        x, y, z = centre
        rows, columns = self._window(x, images.shape[1]), self._window(y, images.shape[2])
        if indexed.compact:
            read_axial_patch(images, labels, z, rows, columns, (images_out, labels_out))
            return
        images_out[:, : rows.stop - rows.start, : columns.stop - columns.start] = images[:, rows, columns, z]
        labels_out[: rows.stop - rows.start, : columns.stop - columns.start] = labels[rows, columns, z]

    def draw(self, batch_size: int, generator: torch.Generator) -> list[tuple[_IndexedVolume, tuple[int, int, int]]]:
        """The volume and the centre of each patch of a batch: every random number a batch takes."""
        picks = []
        for _ in range(batch_size):
            indexed = self.volumes[self._randint(len(self.volumes), generator)]
            picks.append((indexed, self._centre(indexed, generator)))
        return picks

    def read(self, picks: list[tuple[_IndexedVolume, tuple[int, int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The patches at ``picks`` (:meth:`draw`): images (B, C, P, P) float32 and labels (B, P, P) int64."""
        size = self.patch_size
        images = np.zeros((len(picks), self.channels, size, size), np.float32)
        labels = np.zeros((len(picks), size, size), np.int64)
        for indexed, (_, _, z) in picks:
            if indexed.compact:
                indexed.volume.images.prefetch(z)
                indexed.volume.labels.prefetch(z)
        for index, (indexed, centre) in enumerate(picks):
            self._extract(indexed, centre, images[index], labels[index])
        return torch.from_numpy(images), torch.from_numpy(labels)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.read(self.draw(batch_size, generator))


class CubeSampler(PatchSampler):
    """Draws batches of (images (B, C, P, P, P) float32, labels (B, P, P, P) int64) cubes, axes as the volumes'
    (x, y, z)."""

    def _brain_centre(self, indexed: _IndexedVolume, generator: torch.Generator) -> tuple[int, int, int]:
        """A random point of the brain's 3D bounding box."""
        x0, x1, y0, y1, z0, z1 = indexed.box
        return (
            x0 + self._randint(x1 - x0 + 1, generator),
            y0 + self._randint(y1 - y0 + 1, generator),
            z0 + self._randint(z1 - z0 + 1, generator),
        )

    def read(self, picks: list[tuple[_IndexedVolume, tuple[int, int, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The cubes at ``picks`` (:meth:`draw`), each read as the slabs it spans: images (B, C, P, P, P) float32 and
        labels (B, P, P, P) int64, zeros where a volume is smaller than a cube."""
        size = self.patch_size
        images = np.zeros((len(picks), self.channels, size, size, size), np.float32)
        labels = np.zeros((len(picks), size, size, size), np.int64)
        for index, (indexed, centre) in enumerate(picks):
            volume = indexed.volume
            region = tuple(self._window(p, extent) for p, extent in zip(centre, volume.images.shape[1:]))
            filled = tuple(slice(0, window.stop - window.start) for window in region)
            images[(index, slice(None), *filled)] = volume.images[(slice(None), *region)]
            labels[(index, *filled)] = volume.labels[region]
        return torch.from_numpy(images), torch.from_numpy(labels)


def _compact(volume: Volume) -> bool:
    """Whether the volume's images and labels are one compact cache entry's (the sampler's fast path)."""
    images, labels = volume.images, volume.labels
    return isinstance(images, StoredArray) and isinstance(labels, StoredArray) and images.crop == labels.crop
