"""``rotation`` (RT): Gidaris et al. 2018, "Unsupervised representation learning by predicting image rotations"
(ICLR).

Every image of the batch is shown in all four rotations (0, 90, 180 and 270 degrees counter-clockwise), as Gidaris et
al. feed them, and the network predicts which rotation it sees from the encoder's pooled deepest features
(cross-entropy), so a batch of B images trains on 4B inputs. Only the encoder transfers. Adapted to our views: the
pretraining views are square (64-pixel BraTS patches, 128-pixel fetal images and CT slices); all channels rotate
together. The installable example plugin (``examples/rotation_plugin``) shows one random rotation per image instead,
under another name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import BatchSpec, ClassificationTask, TensorSpec

ANGLES = (0, 90, 180, 270)


def all_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image (B, C, S, S) in its four counter-clockwise quarter turns: inputs (4B, 1, C, S, S), image by image,
    and labels (4B,) = 0, 1, 2, 3 for each image."""
    rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(len(ANGLES))], dim=1)
    labels = torch.arange(len(ANGLES), device=images.device).repeat(images.shape[0])
    return rotated.flatten(0, 1)[:, None], labels


@PRETEXT_TASKS.register("rotation")
class Rotation(ClassificationTask):
    """Predict which of the four rotations an image shows, all four of every image in the batch (Gidaris et al.)."""

    label = "RT"
    #: Every image gets all four rotations: the batch does not depend on the generator.
    randomised = False

    @dataclass(frozen=True)
    class Config:
        pass

    @property
    def num_classes(self) -> int:
        return len(ANGLES)

    def class_name(self, index: int) -> str:
        return f"{ANGLES[index]} deg"

    def check_image_size(self, height: int, width: int) -> None:
        if height != width:
            raise ValueError(f"rotation prediction needs square images, got {height}x{width}")

    def batch_spec(self, images_shape: tuple[int, int, int, int]) -> BatchSpec:
        batch, channels, height, width = images_shape
        rotations = len(ANGLES) * batch
        return BatchSpec(
            TensorSpec((rotations, 1, channels, height, width), torch.float32), TensorSpec((rotations,), torch.int64)
        )

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_image_size(*images.shape[-2:])
        return all_rotations(images)
