from __future__ import annotations

import numpy as np
import torch

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.patches import PatchSampler


def _volume(subject: str = "S0") -> Volume:
    images = np.zeros((2, 40, 30, 10), np.float32)
    images[:, 5:35, 5:25, 2:8] = np.arange(30 * 20 * 6, dtype=np.float32).reshape(30, 20, 6)
    labels = np.zeros((40, 30, 10), np.uint8)
    labels[20:22, 10:12, 5] = 3
    return Volume(subject, images, labels, (1.0, 1.0, 1.0))


def test_patches_come_from_axial_slices_with_matching_labels():
    volume = _volume()
    images, labels = PatchSampler([volume], patch_size=16, foreground_fraction=1.0).sample(
        20, torch.Generator().manual_seed(0)
    )
    assert images.shape == (20, 2, 16, 16) and images.dtype == torch.float32
    assert labels.shape == (20, 16, 16) and labels.dtype == torch.int64
    assert (labels == 3).any(dim=(1, 2)).all()  # every patch is centred on the tumour
    # each patch is a verbatim crop of slice 5
    for patch in images:
        matches = [
            (x, y)
            for x in range(40 - 15)
            for y in range(30 - 15)
            if np.array_equal(volume.images[:, x : x + 16, y : y + 16, 5], patch.numpy())
        ]
        assert matches


def test_background_patches_are_centred_in_the_brain_and_reproducible():
    sampler = PatchSampler([_volume("A"), _volume("B")], patch_size=8)
    first = sampler.sample(200, torch.Generator().manual_seed(4))
    second = sampler.sample(200, torch.Generator().manual_seed(4))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # the brain is the box [5:35, 5:25] on slices 2..7: an 8x8 patch centred inside it holds at least 4x4 brain pixels
    assert ((first[0][:, 0] != 0).sum(dim=(1, 2)) >= 15).all()
    generator = torch.Generator().manual_seed(0)
    for indexed in sampler.volumes:
        assert list(indexed.brain_slices) == [2, 3, 4, 5, 6, 7]
        for _ in range(100):
            x, y, z = sampler._centre(indexed, generator)
            assert 5 <= x < 35 and 5 <= y < 25 and 2 <= z < 8


def test_patch_larger_than_slice_is_zero_padded():
    images, labels = PatchSampler([_volume()], patch_size=48).sample(2, torch.Generator().manual_seed(0))
    assert images.shape == (2, 2, 48, 48)
    assert torch.all(images[:, :, 40:, :] == 0) and torch.all(images[:, :, :, 30:] == 0)
