"""``random_augmentation`` (RD+AG in Chen et al. 2019): no pretraining; the downstream training batches are augmented.

The baseline asks whether a pretext task beats plain data augmentation. Its ``Config`` is the
augmentation's (:class:`datasets.augmentation.AugmentationConfig`: flips, rotation, zoom, intensity
scale and shift, Gaussian noise). A downstream task must declare how its targets follow a geometric
transform (``DownstreamTask.target_geometry``) to be trained with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ssl_medbench.datasets.augmentation import AugmentationConfig, BatchAugmentation
from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import Initialisation


@PRETEXT_TASKS.register("random_augmentation")
class RandomAugmentation(Initialisation):
    """Random initialisation, downstream training with data augmentation; transfers nothing."""

    label = "RD+AG"
    spatial_dims_supported = (2, 3)

    @dataclass(frozen=True)
    class Config(AugmentationConfig):
        pass

    def __init__(self, config: RandomAugmentation.Config | None = None):
        super().__init__(config)
        self.config.check()

    def finetune_augmentation(self) -> BatchAugmentation:
        return BatchAugmentation(self.config)
