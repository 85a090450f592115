"""What each task calls a collapsed model (a class, region or organ of the test references predicted for no test
subject), and the whole-set metrics the report recomputes per jackknife subset, against sklearn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from ssl_medbench.downstream.abdominal_organ_localisation import AbdominalOrganLocalisation
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.downstream.fetal_plane_classification import FetalPlaneClassification


def _images(true: list[str], predicted: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"subject_id": [f"p{i // 2}" for i in range(len(true))], "true_class": true, "predicted_class": predicted}
    )


def test_a_classifier_that_never_predicts_a_class_of_the_test_images_is_collapsed() -> None:
    table = _images(["brain", "femur", "other", "brain"], ["brain", "brain", "other", "other"])
    assert FetalPlaneClassification.never_predicted(table) == ["femur"]
    spread = _images(["brain", "femur"], ["femur", "brain"])  # every class predicted somewhere, if wrongly
    assert FetalPlaneClassification.never_predicted(spread) == []


def test_macro_scores_over_the_whole_set_agree_with_sklearn_over_the_classes_seen() -> None:
    true = ["brain", "femur", "other", "brain", "thorax", "other"]
    predicted = ["brain", "brain", "other", "femur", "other", "abdomen"]
    seen = sorted({*true, *predicted})
    scores = FetalPlaneClassification.whole_set_scores(_images(true, predicted))
    assert scores == pytest.approx(
        {
            "precision": precision_score(true, predicted, labels=seen, average="macro", zero_division=0),
            "recall": recall_score(true, predicted, labels=seen, average="macro", zero_division=0),
            "f1": f1_score(true, predicted, labels=seen, average="macro", zero_division=0),
        }
    )


def _regions(cases: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame({"subject_id": ["a", "b", "c"]} | {f"empty_{region}": value for region, value in cases.items()})


def test_a_segmentation_that_predicts_a_present_region_in_no_subject_is_collapsed() -> None:
    table = _regions(
        {
            "whole": ["none", "none", "reference"],
            "core": ["prediction", "both", "prediction"],  # present in a and c, predicted nowhere
            "enhancing": ["both", "both", "both"],  # in no reference: nothing to predict
        }
    )
    assert BratsSegmentation.never_predicted(table) == ["core"]
    table.loc[2, "empty_core"] = "none"  # predicted once
    assert BratsSegmentation.never_predicted(table) == []


def test_a_localiser_that_boxes_a_present_organ_in_no_subject_is_collapsed() -> None:
    table = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c"],
            "detected_liver": [0.0, np.nan, 0.0],  # in two references, never boxed
            "detected_spleen": [1.0, 0.0, 0.0],
            "detected_pancreas": [np.nan, np.nan, np.nan],  # in no reference
        }
    )
    assert AbdominalOrganLocalisation.never_predicted(table) == ["liver"]
