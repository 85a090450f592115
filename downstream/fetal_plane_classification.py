"""``fetal_plane_classification``: standard scan planes of fetal ultrasound, as in Chen et al. (2019), Section 4.1.

Network: SonoNet-64-like (Baumgartner et al. 2017, "SonoNet: real-time detection and localisation of
fetal standard scan planes in freehand ultrasound"): the shared encoder as feature extractor, so
pretext weights transfer, then adaptation layers and global average pooling
(:class:`networks.classifier.SonoNetClassifier`). Trained on whole images of the dataset's
``image_size`` with cross-entropy, classes drawn uniformly (``class_balanced``) or images uniformly.

Metrics over all test images, with scikit-learn: precision, recall and F1 macro-averaged over the
classes that occur in the test labels or predictions, and accuracy; all are fractions (reports show %).
``precision_anatomical``, ``recall_anatomical`` and ``f1_anatomical`` average over the anatomical planes only,
leaving out the catch-all class ``Other`` (``Config.non_anatomical``), as SonoNet (Baumgartner et al. 2017)
averages over its standard planes without the background class. Chen et al. (2019, Table 3) do not say which of
the two they report; its first row is Baumgartner et al.'s own figure, so the paper comparison uses the anatomical
variant. A class never predicted has precision 0 (``zero_division=0``). The primary endpoint is ``f1``, macro F1
over every class, since a catch-all class is part of what a deployed plane classifier must get right. The cell also
logs the per-class report and the confusion matrix (rows true, columns predicted) as CSV and PNG.

Image-blind reference (:meth:`FetalPlaneClassification.image_blind_scores`): the majority class of the labelled
training subjects' images (ties: the lowest class index, :func:`~ssl_medbench.downstream.image_blind.majority_class`),
predicted for every test image and scored as above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.datasets.slice_samplers import SliceClassSampler
from ssl_medbench.datasets.views import WholeImages
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.base import DownstreamTask, ExampleData, MetricSpec
from ssl_medbench.downstream.image_blind import majority_class
from ssl_medbench.networks.classifier import LinearProbe, SonoNetClassifier

#: The macro-averaged metrics, in scikit-learn's order.
MACRO = ("precision", "recall", "f1")


@DOWNSTREAM_TASKS.register("fetal_plane_classification")
class FetalPlaneClassification(DownstreamTask):
    """Classify each image into its standard plane (the dataset's ``class_names``)."""

    target_geometry = "invariant"
    primary_metric = "f1"
    classifies_images = True

    @dataclass(frozen=True)
    class Config:
        dataset: str = "fetal_planes_phantom"
        class_balanced: bool = True
        #: Images per forward pass at inference.
        inference_batch: int = 64
        #: Classes left out of the ``*_anatomical`` averages (the catch-all class of FETAL_PLANES_DB).
        non_anatomical: tuple[str, ...] = ("Other",)

    @classmethod
    def metric_specs(cls, class_names: Sequence[str] = (), config: Any = None) -> dict[str, MetricSpec]:
        """Fractions, higher is better, never NaN; precision, recall and F1 (over all classes and over the anatomical
        ones) are defined over all test images only."""
        over_all_images = MetricSpec("higher", "fraction", per_subject=False)
        averages = {f"{metric}{suffix}": over_all_images for suffix in ("", "_anatomical") for metric in MACRO}
        return averages | {"accuracy": MetricSpec("higher", "fraction")}

    @classmethod
    def example_data(cls, generator: np.random.Generator) -> ExampleData:
        """Two patients with four noisy 32x32 images of three planes each; an image's plane sets its brightness.

        The second patient has no image of the last plane.
        """
        planes = ("abdomen", "brain", "femur")
        volumes = []
        for index, classes in enumerate(([0, 1, 2, 1], [0, 1, 1, 0])):
            classes = np.asarray(classes, np.int64)
            images = generator.normal(0.0, 0.1, (1, 32, 32, len(classes))) + classes / len(planes)
            labels = np.zeros((32, 32, len(classes)), np.uint8)
            volumes.append(Volume(f"patient-{index}", images.astype(np.float32), labels, (1.0, 1.0, 1.0), classes))
        return ExampleData(tuple(volumes), 1, planes)

    def _check_classes(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"fetal_plane_classification needs a dataset with >= 2 classes, got {self.class_names!r}")

    def build_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        self._check_classes()
        return SonoNetClassifier(encoder, len(self.class_names))

    def build_frozen_model(self, encoder: nn.Module, decoder: nn.Module | None) -> nn.Module:
        """A linear probe on the frozen encoder's pooled features (:class:`networks.classifier.LinearProbe`)."""
        self._check_classes()
        return LinearProbe(encoder, len(self.class_names))

    def labelled_images(self, volumes: Sequence[Volume]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every image of ``volumes`` (N, C, H, W) with its plane's class index."""
        images = np.concatenate([np.moveaxis(np.asarray(v.images, dtype=np.float32), -1, 0) for v in volumes])
        classes = np.concatenate([np.asarray(v.slice_classes, dtype=np.int64) for v in volumes])
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(classes)

    def input_view(self) -> WholeImages:
        return WholeImages()

    def make_sampler(self, volumes: Sequence[Volume]) -> SliceClassSampler:
        return SliceClassSampler(volumes, self.config.class_balanced)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(outputs, targets)}

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, volumes: Sequence[Volume], device: torch.device) -> pd.DataFrame:
        """One row per test image: ``subject_id`` (patient), ``image`` (its index), ``true_class``, ``predicted_class``."""
        model.eval()
        rows = []
        for volume in volumes:
            images = np.moveaxis(np.asarray(volume.images, dtype=np.float32), -1, 0)
            for start in range(0, len(images), self.config.inference_batch):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.config.inference_batch])).to(
                    device
                )
                rows += self._rows(volume, start, model(batch).argmax(dim=1).cpu().numpy())
        return pd.DataFrame(rows)

    def image_blind_scores(self, labelled: Sequence[Volume], volumes: Sequence[Volume]) -> pd.DataFrame:
        """:meth:`evaluate`'s table for the majority class of ``labelled``'s images, predicted for every test image."""
        self._check_classes()
        majority = majority_class(labelled, len(self.class_names))
        return pd.DataFrame(
            [row for volume in volumes for row in self._rows(volume, 0, np.full(volume.images.shape[-1], majority))]
        )

    def _rows(self, volume: Volume, start: int, predicted: np.ndarray) -> list[dict[str, object]]:
        """Rows of ``volume``'s images ``start``, ``start + 1``, ... with their ``predicted`` class indices."""
        return [
            {
                "subject_id": volume.subject_id,
                "image": start + offset,
                "true_class": self.class_names[int(volume.slice_classes[start + offset])],
                "predicted_class": self.class_names[int(label)],
            }
            for offset, label in enumerate(predicted)
        ]

    def summarise(self, per_subject: pd.DataFrame) -> dict[str, float]:
        true, predicted = per_subject["true_class"], per_subject["predicted_class"]
        seen = sorted({*true, *predicted})
        anatomical = [name for name in seen if name not in self.config.non_anatomical] or seen
        summary = {"accuracy": float(accuracy_score(true, predicted))} | self.whole_set_scores(per_subject)
        return summary | _macro_scores(true, predicted, anatomical, "_anatomical")

    @classmethod
    def whole_set_scores(cls, per_subject: pd.DataFrame) -> dict[str, float]:
        """Macro precision, recall and F1 over the classes seen (true or predicted) in these rows."""
        true, predicted = per_subject["true_class"], per_subject["predicted_class"]
        return _macro_scores(true, predicted, sorted({*true, *predicted}), "")

    @classmethod
    def never_predicted(cls, per_subject: pd.DataFrame) -> list[str]:
        """Classes of some test image that the model predicted for no test image."""
        return sorted(set(per_subject["true_class"]) - set(per_subject["predicted_class"]))

    @classmethod
    def subject_scores(cls, per_subject: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
        """Accuracy per test patient (precision, recall and F1 are defined over all images only)."""
        correct = per_subject.assign(
            accuracy=(per_subject["true_class"] == per_subject["predicted_class"]).astype(float)
        )
        return correct.groupby("subject_id", as_index=False)[["accuracy"]].mean()

    def write_artifacts(self, per_subject: pd.DataFrame, folder: Path) -> None:
        """``classification_report.csv`` (per class precision, recall, F1, support) and ``confusion_matrix.{csv,png}``."""
        true, predicted = per_subject["true_class"], per_subject["predicted_class"]
        report = classification_report(
            true, predicted, labels=list(self.class_names), output_dict=True, zero_division=0
        )
        pd.DataFrame(report).transpose().to_csv(folder / "classification_report.csv")
        matrix = pd.DataFrame(
            confusion_matrix(true, predicted, labels=list(self.class_names)),
            index=pd.Index(self.class_names, name="true"),
            columns=pd.Index(self.class_names, name="predicted"),
        )
        matrix.to_csv(folder / "confusion_matrix.csv")
        _confusion_figure(matrix).savefig(folder / "confusion_matrix.png", dpi=110)


def _macro_scores(true: pd.Series, predicted: pd.Series, labels: list[str], suffix: str) -> dict[str, float]:
    """Macro precision, recall and F1 over ``labels`` (0 where a class has no prediction or no image)."""
    scores = precision_recall_fscore_support(true, predicted, labels=labels, average="macro", zero_division=0)
    return {f"{metric}{suffix}": float(value) for metric, value in zip(MACRO, scores)}


def _confusion_figure(matrix: pd.DataFrame):
    import seaborn as sns
    from matplotlib.figure import Figure

    figure = Figure(figsize=(1.0 + 0.9 * len(matrix), 0.8 + 0.8 * len(matrix)), layout="constrained")
    axis = figure.subplots()
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=axis)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    return figure
