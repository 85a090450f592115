"""Plane classification and organ localisation: metrics against scikit-learn and hand-computed cases, evaluation with stub models."""

from __future__ import annotations

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
    assert table.loc[0, ["missed_left_kidney", "missed_liver"]].tolist() == [0, 0]


def test_a_missed_organ_is_counted_not_averaged():
    task = AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16), 1, ORGANS)
    table = task.evaluate(_OrganDetector((True, False)), [_ct_volume(), _ct_volume()], torch.device("cpu"))
    summary = task.summarise(table)
    assert summary["missed_liver"] == 2 and summary["missed_left_kidney"] == 0
    assert np.isnan(summary["centroid_liver"]) and summary["centroid_left_kidney"] == 0
    assert summary["wall_left_kidney_std"] == 0
    assert set(task.metric_directions) == {"centroid_left_kidney", "wall_left_kidney", "centroid_liver", "wall_liver"}
    assert all(unit == "mm" for unit in task.metric_units.values())
