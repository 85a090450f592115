"""``abdominal_organ_localisation``: 3D bounding boxes of abdominal organs in CT, as in Chen et al. (2019), Section 4.2.

Method of de Vos et al. (2017, IEEE TMI, "ConvNet-based localization of anatomical structures in 3D
medical images"): 2D slices along the three orthogonal axes, each resized to ``slice_size`` squared,
go through a SonoNet-like classifier with one more conv+pool stack than the plane classifier
(:class:`networks.classifier.SonoNetClassifier` with ``extra_stacks=1``); it predicts per slice which
organs are present (one sigmoid per organ, binary cross-entropy). At test time, per axis, an organ's
extent is its longest run of slices with probability above ``threshold``; the three extents form its
box. The encoder transfers from pretext tasks; the extra stack and the adaptation layers start random.

Metrics per organ and test subject (:mod:`downstream.boxes`): centroid and wall distance in mm, using
the voxel spacing, and ``detected_<organ>`` (1 if a box was predicted, else 0; its mean is the detection rate). An
organ with no positive slice along some axis is *missed*: its distances are the worst any box inside that image could
get (from the reference box to the image's far faces and corner, :func:`~ssl_medbench.downstream.boxes.worst_centroid_distance_mm`),
so misses count in every mean, table and paired test. An organ absent from a subject's reference labels has NaN
distances and detection (nothing to find). The primary endpoint, ``centroid_mean``, is a subject's centroid distance
averaged over the organs its reference labels hold (misses at their worst value; NaN only if it holds none). The cell
logs, per organ, the mean and the standard deviation over subjects (``<metric>_<organ>_std``), as the paper reports
mean ± std.

Image-blind reference (:meth:`AbdominalOrganLocalisation.image_blind_scores`): per organ, the mean box of the labelled
training subjects that hold it (each coordinate averaged in voxel indices,
:func:`~ssl_medbench.downstream.image_blind.mean_boxes`), clipped to each test image as a predicted box always lies
inside its image; an organ no labelled subject holds is predicted missed. Scored as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.datasets.abdominal_ct import ORGANS
from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.slice_samplers import OrthogonalSliceSampler, axis_slices
from ssl_medbench.datasets.views import OrthogonalSlices
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.base import DownstreamTask, ExampleData, MetricSpec
from ssl_medbench.downstream.boxes import (
    Box,
    box_from_mask,
    centroid_distance_mm,
    largest_run,
    wall_distance_mm,
    worst_centroid_distance_mm,
    worst_wall_distance_mm,
)
from ssl_medbench.downstream.image_blind import mean_boxes
from ssl_medbench.networks.classifier import SonoNetClassifier

METRICS = ("centroid", "wall")
#: When a distance or detection is NaN (see the module docstring); a missed organ is scored, never NaN.
NAN_WHEN = "the organ is absent from the reference labels"


@DOWNSTREAM_TASKS.register("abdominal_organ_localisation")
class AbdominalOrganLocalisation(DownstreamTask):
    """Localise each organ of the dataset's ``class_names`` by a 3D bounding box."""

    target_geometry = "invariant"
    primary_metric = "centroid_mean"

    @dataclass(frozen=True)
    class Config:
        dataset: str = "abdominal_ct_phantom"
        #: Side in pixels that every slice is resized to.
        slice_size: int = 64
        #: Probability above which a slice counts as showing the organ.
        threshold: float = 0.5
        #: Slices per forward pass at inference.
        inference_batch: int = 64

    def __init__(
        self, config: AbdominalOrganLocalisation.Config, image_channels: int, class_names: tuple[str, ...] = ORGANS
    ):
        super().__init__(config, image_channels, class_names or ORGANS)
        if not 0 < config.threshold < 1:
            raise ValueError(f"threshold must lie in (0, 1), got {config.threshold}")

    @classmethod
    def metric_specs(cls, class_names: Sequence[str] = (), config: Any = None) -> dict[str, MetricSpec]:
        """``<metric>_<organ>`` in mm, lower is better, and ``detected_<organ>`` (a fraction, higher is better), for
        each organ of ``class_names`` (default: :data:`ORGANS`), and ``centroid_mean`` over a subject's organs."""
        organs = tuple(class_names) or ORGANS
        distance = MetricSpec("lower", "mm", nan_when=NAN_WHEN)
        specs = {f"{metric}_{organ}": distance for metric in METRICS for organ in organs}
        detected = {f"detected_{organ}": MetricSpec("higher", "fraction", nan_when=NAN_WHEN) for organ in organs}
        return specs | detected | {"centroid_mean": MetricSpec("lower", "mm", nan_when="no organ is in the reference")}

    @classmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        """Two noisy CTs of 20x16x12 voxels at 2x2x3 mm with two box-shaped organs; the second lacks the liver."""
        organs = ("left_kidney", "liver")
        volumes = []
        for index, with_liver in enumerate((True, False)):
            labels = np.zeros((20, 16, 12), np.uint8)
            labels[2:8, 3:9, 2:6] = 1
            if with_liver:
                labels[11:18, 4:12, 5:11] = 2
            images = generator.normal(0.0, 0.05, (1, *labels.shape)) + labels / len(organs)
            volumes.append(Volume(f"ct-{index}", images.astype(np.float32), labels, (2.0, 2.0, 3.0)))
        return ExampleData(tuple(volumes), 1, organs)

    @property
    def organs(self) -> tuple[str, ...]:
        return self.class_names

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        return SonoNetClassifier(encoder, len(self.organs), extra_stacks=1)

    def input_view(self) -> OrthogonalSlices:
        return OrthogonalSlices(self.config.slice_size)

    def make_sampler(self, volumes: Sequence[Volume]) -> OrthogonalSliceSampler:
        return OrthogonalSliceSampler(volumes, self.config.slice_size, len(self.organs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.binary_cross_entropy_with_logits(outputs, targets)}

    @torch.inference_mode()
    def predict_boxes(self, model: nn.Module, images: np.ndarray, device: torch.device) -> list[np.ndarray | None]:
        """Per organ: its predicted box (3, 2) in voxel indices, or None if missed along some axis."""
        extents: list[list[tuple[int, int] | None]] = [[] for _ in self.organs]
        for axis in range(3):
            slices = axis_slices(images, axis, self.config.slice_size)
            probabilities = torch.cat(
                [
                    torch.sigmoid(model(slices[start : start + self.config.inference_batch].to(device))).cpu()
                    for start in range(0, len(slices), self.config.inference_batch)
                ]
            )
            for organ in range(len(self.organs)):
                extents[organ].append(largest_run((probabilities[:, organ] > self.config.threshold).numpy()))
        return [None if any(e is None for e in organ) else np.array(organ, dtype=np.int64) for organ in extents]

    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        model.eval()
        return pd.DataFrame(
            [self._subject_row(volume, self.predict_boxes(model, volume.images, device)) for volume in volumes]
        )

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """:meth:`evaluate`'s table for the mean boxes of ``labelled``, clipped to each test image (module docstring)."""
        boxes = mean_boxes(labelled, len(self.organs))
        return pd.DataFrame(
            [self._subject_row(volume, [_clipped(box, volume.labels.shape) for box in boxes]) for volume in volumes]
        )

    def _subject_row(self, volume: Volume, predicted: Sequence[Box | None]) -> dict[str, object]:
        """One subject's row: every organ's scores for its ``predicted`` box (None: missed) and ``centroid_mean``."""
        labels = np.asarray(volume.labels)
        row: dict[str, object] = {"subject_id": volume.subject_id}
        for index, (organ, box) in enumerate(zip(self.organs, predicted), start=1):
            row.update(_organ_scores(organ, box, box_from_mask(labels == index), labels.shape, volume.spacing))
        row["centroid_mean"] = _mean_over_present([row[f"centroid_{organ}"] for organ in self.organs])
        return row

    @classmethod
    def never_predicted(cls, per_subject: pd.DataFrame) -> list[str]:
        """Organs in some test subject's reference for which no test subject got a box."""
        detected = {
            column.removeprefix("detected_"): per_subject[column].dropna()  # NaN: the organ is not in the reference
            for column in per_subject
            if column.startswith("detected_")
        }
        return [organ for organ, boxed in detected.items() if len(boxed) and not boxed.any()]

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        """Means over subjects (misses scored, NaN only without a reference organ) and ``<metric>_<organ>_std`` (sample
        std, NaN for < 2 values) of every distance."""
        summary = super().summarise(per_subject)
        for name in self.metric_directions:
            if not name.startswith("detected_"):
                summary[f"{name}_std"] = float(per_subject[name].std(ddof=1))
        return summary


def _clipped(box: Box | None, shape: tuple[int, ...]) -> Box | None:
    """``box`` with every coordinate clipped to the voxel indices of an image of ``shape``; None stays None."""
    return None if box is None else np.clip(box, 0, np.asarray(shape)[:, None] - 1)


def _mean_over_present(distances: Sequence[float]) -> float:
    """The mean of the organs' values that are not NaN (organs in the reference); NaN if there are none."""
    present = [value for value in distances if not np.isnan(value)]
    return float(np.mean(present)) if present else float("nan")


def _organ_scores(
    organ: str, predicted: Box | None, reference: Box | None, shape: tuple[int, ...], spacing: Sequence[float]
) -> dict[str, float]:
    """``centroid_``, ``wall_`` and ``detected_<organ>`` of one subject (see the module docstring)."""
    if reference is None:
        return {f"centroid_{organ}": np.nan, f"wall_{organ}": np.nan, f"detected_{organ}": np.nan}
    if predicted is None:
        return {
            f"centroid_{organ}": worst_centroid_distance_mm(reference, shape, spacing),
            f"wall_{organ}": worst_wall_distance_mm(reference, shape, spacing),
            f"detected_{organ}": 0.0,
        }
    return {
        f"centroid_{organ}": centroid_distance_mm(predicted, reference, spacing),
        f"wall_{organ}": wall_distance_mm(predicted, reference, spacing),
        f"detected_{organ}": 1.0,
    }
