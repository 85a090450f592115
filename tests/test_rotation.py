"""rotation: every image in its four rotations, each an exact rot90 with its label."""

from __future__ import annotations

import pytest
import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.rotation import ANGLES, Rotation


def test_the_four_rotated_copies_are_exact_rot90s_and_labels_match():
    images = torch.randn(5, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    inputs, labels = PRETEXT_TASKS.get("rotation")().make_batch(images, torch.Generator().manual_seed(1))
    assert inputs.shape == (20, 1, 2, 12, 12) and labels.tolist() == [0, 1, 2, 3] * 5
    for index in range(20):
        image, turns = images[index // 4], int(labels[index])
        assert torch.equal(inputs[index, 0], torch.rot90(image, turns, dims=(-2, -1)))
        assert torch.equal(torch.rot90(inputs[index, 0], -turns, dims=(-2, -1)), image)
    assert not torch.equal(inputs[1, 0], inputs[0, 0])  # a quarter turn of random content changes it


def test_the_batch_is_the_same_for_every_seed_and_non_square_images_are_refused():
    task = Rotation()
    images = torch.randn(3, 1, 8, 8)
    first, _ = task.make_batch(images, torch.Generator().manual_seed(0))
    second, _ = task.make_batch(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, second) and task.num_classes == len(ANGLES) == 4
    assert task.class_name(3) == "270 deg" and task.label == "RT" and task.transfers == ("encoder",)
    with pytest.raises(ValueError, match="rotation prediction needs square images, got 64x32"):
        task.check_image_size(64, 32)
