"""``rotation_one_per_image`` (RT1): a variant of Gidaris et al. 2018, "Unsupervised representation learning by
predicting image rotations".

Each image is rotated by 0, 90, 180 or 270 degrees and the network predicts which, from the
encoder's pooled deepest features (cross-entropy). Gidaris et al. feed all four rotations of every
image in one batch, as the built-in ``rotation`` task does; here each image gets one random rotation, so a batch
holds as many images as the runner's batch size. Only the encoder transfers. Needs square images.

An example of a pretext task that lives outside ssl-medbench and builds on a built-in one: installed with pip, found
through the ``ssl_medbench.pretext_tasks`` entry point declared in this package's pyproject.toml.
"""

from __future__ import annotations

import torch

from ssl_medbench.pretext_tasks.base import BatchSpec, ClassificationTask
from ssl_medbench.pretext_tasks.rotation import ANGLES, Rotation


def rotate_batch(images: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Rotate each image (B, C, S, S) counter-clockwise by ``quarter_turns[b]`` x 90 degrees, all at once."""
    every = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(len(ANGLES))])  # (4, B, C, S, S)
    return every[quarter_turns, torch.arange(images.shape[0], device=images.device)]


class RotationPrediction(Rotation):
    """Predict the rotation (0, 90, 180 or 270 degrees) applied to an image, one random rotation per image: the
    built-in task's classes and checks, another batch."""

    label = "RT1"
    randomised = True

    def batch_spec(self, images_shape: tuple[int, int, int, int]) -> BatchSpec:
        return ClassificationTask.batch_spec(self, images_shape)

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_image_size(*images.shape[-2:])
        quarter_turns = torch.randint(0, len(ANGLES), (images.shape[0],), generator=generator, device=images.device)
        return rotate_batch(images, quarter_turns)[:, None], quarter_turns
