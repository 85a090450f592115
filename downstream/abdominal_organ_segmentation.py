"""``abdominal_organ_segmentation``: multi-organ segmentation of abdominal CT, the downstream task the 3D SSL suites
report (Models Genesis, Zhou et al. 2021; Swin UNETR pretraining on BTCV, Tang et al. 2022; OpenMind / nnssl, Wald et
al. 2025).

The organs are the dataset's ``class_names`` (label k is organ k; MSD, BTCV and the CT phantom,
:mod:`~ssl_medbench.datasets.abdominal_ct`). A U-Net trains on patches (2D: axial slices; 3D: cubes, with ``spatial_dims:
3``) centred on an organ voxel with probability ``foreground_fraction``, with cross-entropy plus soft Dice over the
organs, and predicts whole volumes slice by slice or by sliding windows (:mod:`~ssl_medbench.downstream.segmentation`).

Metrics per test subject and organ: Dice (``dice_<organ>``) and the normalised surface Dice at each of
``nsd_tolerances_mm`` (``nsd_<tolerance>mm_<organ>``), both fractions (reports show %), under the
``empty_mask_policy`` of :mod:`downstream.metrics`: an organ absent from both the reference and the prediction scores
1, absent from one of them 0, so a subject that lacks an organ still has a value; ``empty_<organ>`` records which mask
was empty, if any. The primary endpoint, ``dice_mean``, is a subject's mean Dice over the organs.

Image-blind reference (:meth:`AbdominalOrganSegmentation.image_blind_scores`): CT volumes differ in shape, so no
voxel-wise prior fits them all; per organ, the mean bounding box of the labelled training subjects that hold it
(:func:`~ssl_medbench.downstream.image_blind.mean_boxes`, voxel indices) filled as that organ, organs in label order
(a later one overwrites an earlier one where boxes meet), clipped to each test volume. Scored as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssl_medbench.core.config_fields import bounded
from ssl_medbench.datasets.abdominal_ct import ORGANS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.abdominal_organ_localisation import AbdominalOrganLocalisation
from ssl_medbench.downstream.base import ExampleData, MetricSpec
from ssl_medbench.downstream.boxes import Box
from ssl_medbench.downstream.image_blind import mean_boxes
from ssl_medbench.downstream.metrics import EMPTY_MASK_POLICIES, dice, empty_case, normalized_surface_dice
from ssl_medbench.downstream.segmentation import NSD_SPEC, PatchSegmentation, check_surface_settings, nsd_name

DICE_SPEC = MetricSpec("higher", "fraction")


def painted_boxes(boxes: Sequence[Box | None], shape: tuple[int, ...]) -> np.ndarray:
    """A label map of ``shape`` with box k (inclusive voxel-index corners, fractional ones rounded) filled with label
    k + 1, clipped to the map; None boxes paint nothing."""
    labels = np.zeros(shape, np.uint8)
    for label, box in enumerate(boxes, start=1):
        if box is None:
            continue
        region = tuple(
            slice(max(int(round(low)), 0), min(int(round(high)) + 1, extent)) for (low, high), extent in zip(box, shape)
        )
        labels[region] = label
    return labels


@DOWNSTREAM_TASKS.register("abdominal_organ_segmentation")
class AbdominalOrganSegmentation(PatchSegmentation):
    """Segment each organ of the dataset's ``class_names`` in CT volumes."""

    primary_metric = "dice_mean"

    @dataclass(frozen=True)
    class Config:
        dataset: str = "abdominal_ct_phantom"
        #: Side of the training patches (2D) or cubes (3D), and of the sliding windows in 3D.
        patch_size: int = bounded(64, low=1)
        #: Share of training patches centred on an organ voxel.
        foreground_fraction: float = 0.5
        #: Slices (3D: sliding windows) per forward pass at inference.
        inference_batch: int = 32
        dice_loss_weight: float = 1.0
        #: Tolerances (mm) of the normalised surface Dice, each logged as ``nsd_<tolerance>mm_<organ>``.
        nsd_tolerances_mm: tuple[float, ...] = (1.0, 2.0)
        #: What empty masks score (downstream.metrics.EMPTY_MASK_POLICIES): "image_diagonal" or "brats2023".
        empty_mask_policy: str = "image_diagonal"

    def __init__(
        self, config: AbdominalOrganSegmentation.Config, image_channels: int, class_names: tuple[str, ...] = ORGANS
    ):
        super().__init__(config, image_channels, class_names or ORGANS)
        check_surface_settings(config.nsd_tolerances_mm, config.empty_mask_policy)

    @property
    def organs(self) -> tuple[str, ...]:
        return self.class_names

    @property
    def num_classes(self) -> int:
        """The organs and the background."""
        return len(self.organs) + 1

    @classmethod
    def metric_specs(
        cls, class_names: Sequence[str] = (), config: AbdominalOrganSegmentation.Config | None = None
    ) -> dict[str, MetricSpec]:
        """``dice_<organ>`` and ``nsd_<tolerance>mm_<organ>`` for each organ of ``class_names`` (default:
        :data:`ORGANS`) and tolerance of ``config``, and ``dice_mean`` over the organs."""
        config = config or cls.Config()
        organs = tuple(class_names) or ORGANS
        stems = {"dice": DICE_SPEC} | {nsd_name(tolerance): NSD_SPEC for tolerance in config.nsd_tolerances_mm}
        return {f"{stem}_{organ}": spec for stem, spec in stems.items() for organ in organs} | {"dice_mean": DICE_SPEC}

    def metric_conventions(self) -> dict[str, str]:
        conventions = {}
        if self.config.nsd_tolerances_mm:
            conventions["nsd_<tolerance>mm_<organ>"] = (
                "normalised surface Dice at the tolerance (DeepMind surface-distance compute_surface_dice_at_tolerance)"
            )
        conventions["empty masks"] = EMPTY_MASK_POLICIES[self.config.empty_mask_policy].describe()
        return conventions

    @classmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        """Organ localisation's example CTs: two box-shaped organs, the second subject without the liver."""
        return AbdominalOrganLocalisation.example_data(generator)

    def subject_row(self, volume: Volume, predicted: np.ndarray) -> dict[str, object]:
        """Every metric of the config per organ of the ``predicted`` label map against the subject's labels."""
        policy = EMPTY_MASK_POLICIES[self.config.empty_mask_policy]
        reference = np.asarray(volume.labels)
        row: dict[str, object] = {"subject_id": volume.subject_id}
        for label, organ in enumerate(self.organs, start=1):
            pred, ref = predicted == label, reference == label
            row[f"dice_{organ}"] = dice(pred, ref, policy)
            for tolerance in self.config.nsd_tolerances_mm:
                row[f"{nsd_name(tolerance)}_{organ}"] = normalized_surface_dice(
                    pred, ref, volume.spacing, tolerance, policy
                )
            row[f"empty_{organ}"] = empty_case(pred, ref)
        row["dice_mean"] = float(np.mean([row[f"dice_{organ}"] for organ in self.organs]))
        return row

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """:meth:`evaluate`'s table for the mean organ boxes of ``labelled`` painted into every test volume (see the
        module docstring)."""
        boxes = mean_boxes(labelled, len(self.organs))
        return pd.DataFrame(
            [self.subject_row(volume, painted_boxes(boxes, np.shape(volume.labels))) for volume in volumes]
        )
