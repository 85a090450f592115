"""Plane classification and organ localisation: metrics against scikit-learn and hand-computed cases, evaluation with stub models."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream.abdominal_organ_localisation import AbdominalOrganLocalisation
from ssl_medbench.downstream.fetal_plane_classification import FetalPlaneClassification

CLASSES = ("cat", "dog", "eel")


def _classification_table(true: list[int], predicted: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject_id": "p",
            "image": range(len(true)),
            "true_class": [CLASSES[t] for t in true],
            "predicted_class": [CLASSES[p] for p in predicted],
        }
    )


def test_classification_summary_matches_scikit_learn_and_a_hand_computation():
    true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2]
    task = FetalPlaneClassification(FetalPlaneClassification.Config(), 1, CLASSES)
    summary = task.summarise(_classification_table(true, predicted))
    # by hand: precision cat 2/3, dog 1/2, eel 3/4; recall cat 2/3, dog 1/2, eel 3/4
    assert summary["precision"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert summary["recall"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert summary["accuracy"] == pytest.approx(6 / 9)
    assert summary["f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    assert summary["precision"] == pytest.approx(precision_score(true, predicted, average="macro"))
    assert summary["recall"] == pytest.approx(recall_score(true, predicted, average="macro"))


def test_anatomical_averages_leave_out_the_catch_all_class():
    """With "eel" as the catch-all class: precision cat 2/3, dog 1/2 (eel's 3/4 left out), recall the same."""
    true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2]
    task = FetalPlaneClassification(FetalPlaneClassification.Config(non_anatomical=("eel",)), 1, CLASSES)
    summary = task.summarise(_classification_table(true, predicted))
    assert summary["precision_anatomical"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert summary["recall_anatomical"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert summary["f1_anatomical"] == pytest.approx(f1_score(true, predicted, labels=[0, 1], average="macro"))
    assert summary["f1"] == pytest.approx(f1_score(true, predicted, average="macro"))
    default = FetalPlaneClassification(FetalPlaneClassification.Config(), 1, CLASSES)  # no "Other": all classes
    assert default.summarise(_classification_table(true, predicted))["f1_anatomical"] == pytest.approx(summary["f1"])


def test_confusion_matrix_and_report_are_written(tmp_path):
    true = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    predicted = [0, 1, 0, 1, 2, 2, 2, 0, 2]
    task = FetalPlaneClassification(FetalPlaneClassification.Config(), 1, CLASSES)
    task.write_artifacts(_classification_table(true, predicted), tmp_path)
    matrix = pd.read_csv(tmp_path / "confusion_matrix.csv", index_col=0)
    assert matrix.loc["cat"].tolist() == [2, 1, 0]
    assert matrix.loc["dog"].tolist() == [0, 1, 1]
    assert matrix.loc["eel"].tolist() == [1, 0, 3]
    report = pd.read_csv(tmp_path / "classification_report.csv", index_col=0)
    assert report.loc["eel", "support"] == 4 and report.loc["dog", "precision"] == pytest.approx(0.5)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


class _MeanClassifier(nn.Module):
    """Predicts class round(mean intensity): a stub whose outputs are known for given images."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        level = images.mean(dim=(1, 2, 3)).round().long()
        return nn.functional.one_hot(level, len(CLASSES)).float()


def test_classification_evaluates_every_image_of_every_test_patient():
    images = np.stack([np.full((8, 8), value, np.float32) for value in (0, 2, 1, 1)], axis=-1)[None]
    volume = Volume("patient-1", images, np.zeros((8, 8, 4), np.uint8), (1.0, 1.0, 1.0), np.array([0, 2, 1, 0]))
    task = FetalPlaneClassification(FetalPlaneClassification.Config(inference_batch=3), 1, CLASSES)
    table = task.evaluate(_MeanClassifier(), [volume], torch.device("cpu"))
    assert table["image"].tolist() == [0, 1, 2, 3]
    assert table["true_class"].tolist() == ["cat", "eel", "dog", "cat"]
    assert table["predicted_class"].tolist() == ["cat", "eel", "dog", "dog"]


ORGANS = ("left_kidney", "liver")


class _OrganDetector(nn.Module):
    """Organ k is 'present' in a slice whose maximum intensity reaches k / 10 (the test volumes encode organ k as intensity k / 10)."""

    def __init__(self, detect: tuple[bool, ...] = (True, True)):
        super().__init__()
        self.detect = detect

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1)
        present = [
            ((flat - (k + 1) / 10).abs() < 1e-4).any(dim=1) & torch.tensor(on) for k, on in enumerate(self.detect)
        ]
        return torch.stack(present, dim=1).float() * 20 - 10


def _ct_volume() -> Volume:
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[2:6, 3:9, 4:12] = 1
    labels[9:15, 1:7, 0:5] = 2
    images = (labels / 10).astype(np.float32)[None]
    return Volume("ct-1", images, labels, (0.8, 0.8, 2.5))


def test_localisation_with_a_perfect_detector_has_zero_distances_and_no_misses():
    task = AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16, inference_batch=5), 1, ORGANS)
    boxes = task.predict_boxes(_OrganDetector(), _ct_volume().images, torch.device("cpu"))
    assert boxes[0].tolist() == [[2, 5], [3, 8], [4, 11]] and boxes[1].tolist() == [[9, 14], [1, 6], [0, 4]]
    table = task.evaluate(_OrganDetector(), [_ct_volume()], torch.device("cpu"))
    assert table.loc[0, ["centroid_left_kidney", "wall_left_kidney", "centroid_liver", "wall_liver"]].tolist() == [
        0,
        0,
        0,
        0,
    ]
    assert table.loc[0, ["detected_left_kidney", "detected_liver"]].tolist() == [1, 1]


#: The liver of :func:`_ct_volume` missed: its box [9, 14] x [1, 6] x [0, 4] at 0.8 x 0.8 x 2.5 mm has walls at
#: 7.2 | 12.0, 0.8 | 5.6 and 0 | 12.5 mm in an image 12.8 x 12.8 x 40 mm wide; its centre (9.6, 3.2, 6.25) lies
#: 9.6, 9.6 and 33.75 mm from the farthest faces, and each wall at most 7.2, 12.0, 12.0, 7.2, 40 and 27.5 mm from a
#: wall inside the image.
MISSED_LIVER_CENTROID = math.sqrt(9.6**2 + 9.6**2 + 33.75**2)
MISSED_LIVER_WALL = (7.2 + 12.0 + 12.0 + 7.2 + 40.0 + 27.5) / 6


def test_a_missed_organ_scores_the_worst_distance_in_its_image_and_counts_in_the_mean():
    task = AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16), 1, ORGANS)
    found = task.evaluate(_OrganDetector(), [_ct_volume()], torch.device("cpu"))
    missed = task.evaluate(_OrganDetector((True, False)), [_ct_volume()], torch.device("cpu"))
    assert missed.loc[0, "centroid_liver"] == pytest.approx(MISSED_LIVER_CENTROID)
    assert missed.loc[0, "wall_liver"] == pytest.approx(MISSED_LIVER_WALL)
    assert missed.loc[0, ["detected_left_kidney", "detected_liver"]].tolist() == [1, 0]
    assert missed.loc[0, "centroid_mean"] == pytest.approx(MISSED_LIVER_CENTROID / 2)  # the kidney found exactly
    summary = task.summarise(pd.concat([found, missed], ignore_index=True))
    assert summary["centroid_liver"] == pytest.approx(MISSED_LIVER_CENTROID / 2)  # one subject found exactly
    assert summary["wall_liver"] == pytest.approx(MISSED_LIVER_WALL / 2)
    assert summary["detected_liver"] == 0.5 and summary["detected_left_kidney"] == 1
    assert summary["wall_left_kidney_std"] == 0 and "detected_liver_std" not in summary
    assert task.metric_units == {
        "centroid_left_kidney": "mm",
        "centroid_liver": "mm",
        "wall_left_kidney": "mm",
        "wall_liver": "mm",
        "detected_left_kidney": "fraction",
        "detected_liver": "fraction",
        "centroid_mean": "mm",
    }
    assert task.metric_directions["detected_liver"] == "higher" and task.metric_directions["wall_liver"] == "lower"


def test_an_organ_absent_from_the_reference_has_nothing_to_find():
    volume = _ct_volume()
    labels = np.where(volume.labels == 2, 0, volume.labels).astype(np.uint8)
    without_liver = Volume("ct-2", (labels / 10).astype(np.float32)[None], labels, volume.spacing)
    task = AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16), 1, ORGANS)
    table = task.evaluate(_OrganDetector(), [without_liver], torch.device("cpu"))
    assert table.loc[0, ["centroid_liver", "wall_liver", "detected_liver"]].isna().all()
    assert table.loc[0, "centroid_mean"] == table.loc[0, "centroid_left_kidney"]  # averaged over the organs present


def test_the_primary_endpoint_of_a_subject_without_any_reference_organ_is_nan():
    volume = _ct_volume()
    empty = np.zeros_like(volume.labels)
    task = AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16), 1, ORGANS)
    table = task.evaluate(
        _OrganDetector(), [Volume("ct-3", empty[None].astype(np.float32), empty, volume.spacing)], torch.device("cpu")
    )
    assert np.isnan(table.loc[0, "centroid_mean"])
    assert "no organ" in AbdominalOrganLocalisation.metric_specs()["centroid_mean"].nan_when
