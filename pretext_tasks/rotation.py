"""``rotation`` (RT): Gidaris et al. 2018, "Unsupervised representation learning by predicting image rotations"
(ICLR).

Every image of the batch is shown in all four rotations (0, 90, 180 and 270 degrees counter-clockwise), as Gidaris et
al. feed them, and the network predicts which rotation it sees from the encoder's pooled deepest features
(cross-entropy), so a batch of B images trains on 4B inputs. Only the encoder transfers. Adapted to our views: the
pretraining views are square (64-pixel BraTS patches, 128-pixel fetal images and CT slices); all channels rotate
together. The installable example plugin (``examples/rotation_plugin``) shows one random rotation per image instead,
under another name.

3D form (Taleb et al. 2020, 3D rotation prediction): a cube is turned by 90, 180 or 270 degrees about one of its
three axes, or not at all: 10 classes (the identity once, then three turns for each axis). Ten copies of every volume
would make a 3D batch ten times larger, so, as Taleb et al. do, each volume of the batch shows one of the ten at
random (drawn from the job's generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import BatchSpec, ClassificationTask, TensorSpec

ANGLES = (0, 90, 180, 270)
#: The 3D classes: (axis of the turn as the (depth, height, width) axis it keeps, quarter turns); class 0: none.
TURNS_3D = ((0, 0), *((axis, turns) for axis in range(3) for turns in (1, 2, 3)))


def all_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image (B, C, S, S) in its four counter-clockwise quarter turns: inputs (4B, 1, C, S, S), image by image,
    and labels (4B,) = 0, 1, 2, 3 for each image."""
    rotated = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(len(ANGLES))], dim=1)
    labels = torch.arange(len(ANGLES), device=images.device).repeat(images.shape[0])
    return rotated.flatten(0, 1)[:, None], labels


def turned(volume: torch.Tensor, rotation: int) -> torch.Tensor:
    """``volume`` (C, D, H, W) turned as class ``rotation`` of :data:`TURNS_3D` says (about the kept axis, counter-
    clockwise in the plane of the other two)."""
    axis, turns = TURNS_3D[rotation]
    plane = [dim for dim in (1, 2, 3) if dim != axis + 1]
    return torch.rot90(volume, turns, dims=plane)


def random_turns(volumes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each cube of ``volumes`` (B, C, S, S, S) turned by one random class of :data:`TURNS_3D`: inputs
    (B, 1, C, S, S, S) and labels (B,)."""
    labels = torch.randint(0, len(TURNS_3D), (volumes.shape[0],), generator=generator, device=volumes.device)
    rotated = torch.stack([turned(volume, int(label)) for volume, label in zip(volumes, labels)])
    return rotated[:, None], labels


@PRETEXT_TASKS.register("rotation")
class Rotation(ClassificationTask):
    """Predict which of the four rotations an image shows, all four of every image in the batch (Gidaris et al.)."""

    label = "RT"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config:
        pass

    @property
    def randomised(self) -> bool:
        """2D: every image gets all four rotations, so the batch does not depend on the generator; 3D: one at random."""
        return self.spatial_dims == 3

    @property
    def num_classes(self) -> int:
        return len(ANGLES) if self.spatial_dims == 2 else len(TURNS_3D)

    def class_name(self, index: int) -> str:
        if self.spatial_dims == 2:
            return f"{ANGLES[index]} deg"
        axis, turns = TURNS_3D[index]
        return "none" if turns == 0 else f"{90 * turns} deg about axis {axis}"

    def check_image_size(self, height: int, width: int) -> None:
        if height != width:
            raise ValueError(f"rotation prediction needs square images, got {height}x{width}")

    def batch_spec(self, images_shape: tuple[int, ...]) -> BatchSpec:
        batch, channels, *sides = images_shape
        rotations = len(ANGLES) * batch if self.spatial_dims == 2 else batch
        return BatchSpec(
            TensorSpec((rotations, 1, channels, *sides), torch.float32), TensorSpec((rotations,), torch.int64)
        )

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        sides = images.shape[2:]
        if len(set(sides)) != 1:
            raise ValueError(f"rotation prediction needs square images or cubes, got {'x'.join(map(str, sides))}")
        return all_rotations(images) if images.ndim == 4 else random_turns(images, generator)
