"""Training batches of whole 2D slices: classified images (plane classification) and orthogonal CT slices (organ localisation).

Both draw only from the ``torch.Generator`` they are given and return CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ssl_medbench.datasets.base import Volume


class SliceClassSampler:
    """Images (B, C, H, W) and their classes (B,) from 2D image datasets (``Volume.slice_classes``).

    With ``class_balanced``, a class is drawn uniformly first and then one of its images, so rare
    planes are seen as often as common ones; otherwise images are drawn uniformly.
    """

    def __init__(self, volumes: Sequence[Volume], class_balanced: bool):
        if not volumes:
            raise ValueError("SliceClassSampler needs at least one volume")
        self.volumes = list(volumes)
        self.index = np.array(
            [(v, z) for v, volume in enumerate(volumes) for z in range(volume.images.shape[-1])], dtype=np.int64
        )
        self.classes = np.concatenate([np.asarray(volume.slice_classes) for volume in volumes])
        self.by_class = [np.flatnonzero(self.classes == c) for c in np.unique(self.classes)]
        self.class_balanced = class_balanced

    def _pick(self, generator: torch.Generator) -> int:
        if self.class_balanced:
            members = self.by_class[int(torch.randint(len(self.by_class), (1,), generator=generator))]
            return int(members[int(torch.randint(len(members), (1,), generator=generator))])
        return int(torch.randint(len(self.index), (1,), generator=generator))

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = [self._pick(generator) for _ in range(batch_size)]
        images = np.stack([np.asarray(self.volumes[v].images[..., z]) for v, z in self.index[picks]])
        return torch.from_numpy(images.astype(np.float32)), torch.from_numpy(self.classes[picks])


def axis_slices(images: np.ndarray, axis: int, size: int) -> torch.Tensor:
    """All slices of ``images`` (C, x, y, z) across spatial ``axis`` (0, 1 or 2), each resized bilinearly to (size, size): (n, C, size, size)."""
    stack = torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(images, dtype=np.float32), axis + 1, 0)))
    return F.interpolate(stack, size=(size, size), mode="bilinear", align_corners=False)


def slice_presence(labels: np.ndarray, axis: int, classes: int) -> np.ndarray:
    """(n slices along ``axis``, classes) bool: which of labels 1..classes occur in each slice."""
    moved = np.moveaxis(np.asarray(labels), axis, 0).reshape(labels.shape[axis], -1)
    presence = np.zeros((labels.shape[axis], classes), bool)
    for label in range(1, classes + 1):
        presence[:, label - 1] = (moved == label).any(axis=1)
    return presence


class OrthogonalSliceSampler:
    """Slices along all three axes, resized to ``size`` squared, with multi-hot organ presence targets (de Vos et al. 2017).

    An example is a random subject, a random axis and a random slice; targets are float (B, ``classes``) and hold
    which of labels 1..``classes`` each slice shows (no classes: unlabelled batches, targets of width 0).
    """

    def __init__(self, volumes: Sequence[Volume], size: int, classes: int = 0):
        if not volumes:
            raise ValueError("OrthogonalSliceSampler needs at least one volume")
        self.slices = [[axis_slices(v.images, axis, size) for axis in range(3)] for v in volumes]
        self.presence = [
            [torch.from_numpy(slice_presence(v.labels, axis, classes)).float() for axis in range(3)] for v in volumes
        ]

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = [], []
        for _ in range(batch_size):
            volume = int(torch.randint(len(self.slices), (1,), generator=generator))
            axis = int(torch.randint(3, (1,), generator=generator))
            index = int(torch.randint(len(self.slices[volume][axis]), (1,), generator=generator))
            images.append(self.slices[volume][axis][index])
            targets.append(self.presence[volume][axis][index])
        return torch.stack(images), torch.stack(targets)
