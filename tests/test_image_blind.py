"""Image-blind references: hand-computed predictions and scores, the same table as evaluate for a model predicting the
same thing, blindness to the test images, and clear errors on data they cannot use."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score
from torch import nn

from ssl_medbench.datasets.base import Volume
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.downstream.abdominal_organ_localisation import AbdominalOrganLocalisation
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.downstream.fetal_plane_classification import FetalPlaneClassification
from ssl_medbench.downstream.image_blind import majority_class, majority_label_map, mean_boxes

CPU = torch.device("cpu")


def _brain(subject_id: str, labels: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Volume:
    """A four-channel brain whose channel 0 holds its labels (what :class:`_LabelsInChannelZero` reads)."""
    images = np.zeros((4, *labels.shape), np.float32)
    images[0] = labels
    return Volume(subject_id, images, labels.astype(np.uint8), spacing)


def _brats_training() -> list[Volume]:
    """Edema at [2:5, 2:5, 0] in two of three subjects; the third has enhancing tumour at [5:7, 5:7, 1] instead."""
    subjects = []
    for index in range(3):
        labels = np.zeros((8, 8, 2), np.uint8)
        if index < 2:
            labels[2:5, 2:5, 0] = 2
        else:
            labels[5:7, 5:7, 1] = 3
        subjects.append(_brain(f"train-{index}", labels))
    return subjects


def _brats_task() -> BratsSegmentation:
    return BratsSegmentation(BratsSegmentation.Config(), image_channels=4)


def test_the_voxel_wise_majority_keeps_the_tumour_two_of_three_subjects_share():
    expected = np.zeros((8, 8, 2), np.uint8)
    expected[2:5, 2:5, 0] = 2  # 2 of 3 subjects; the enhancing tumour of one subject loses to background
    assert np.array_equal(majority_label_map(_brats_training(), 4), expected)


def test_a_tie_between_classes_goes_to_the_lowest_class_so_background_wins():
    labels = [np.full((2, 2, 1), value, np.uint8) for value in (0, 2, 3)]
    tied = majority_label_map([_brain(f"s{i}", label) for i, label in enumerate(labels)], 4)
    assert not tied.any()
    two_tumours = majority_label_map([_brain("a", labels[1]), _brain("b", labels[2])], 4)
    assert (two_tumours == 2).all()  # edema (2) and enhancing (3) tie: the lower class


def test_brats_reference_dice_by_hand():
    """Test edema at [3:6, 2:5, 0]: 9 voxels, 6 of them inside the prior's 9; core and enhancing empty in both."""
    labels = np.zeros((8, 8, 2), np.uint8)
    labels[3:6, 2:5, 0] = 2
    table = _brats_task().image_blind_scores(_brats_training(), [_brain("test", labels)])
    assert table.loc[0, "dice_whole"] == pytest.approx(2 * 6 / (9 + 9))
    assert table.loc[0, ["dice_core", "dice_enhancing"]].tolist() == [1.0, 1.0]  # both masks empty: 1.0
    assert table.loc[0, ["empty_whole", "empty_core"]].tolist() == ["none", "both"]
    assert table.loc[0, "dice_mean"] == pytest.approx((2 / 3 + 1 + 1) / 3)


def test_a_prior_that_predicts_background_scores_an_empty_prediction():
    """Tumours in three different places: the majority is background everywhere; Dice of the empty mask is 0."""
    places = [(slice(0, 2), slice(0, 2)), (slice(3, 5), slice(3, 5)), (slice(6, 8), slice(6, 8))]
    training = []
    for index, (rows, columns) in enumerate(places):
        labels = np.zeros((8, 8, 2), np.uint8)
        labels[rows, columns, 0] = 2
        training.append(_brain(f"train-{index}", labels))
    table = _brats_task().image_blind_scores(training, [training[0]])
    assert table.loc[0, "empty_whole"] == "prediction" and table.loc[0, "dice_whole"] == 0.0


class _LabelsInChannelZero(nn.Module):
    """One-hot logits of the labels held in channel 0 of the input (the prior's map, for the test below)."""

    def __init__(self):
        super().__init__()
        self.decoder = type("Decoder", (), {"size_multiple": 8})()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(images[:, 0].round().long(), 4).permute(0, 3, 1, 2).float()


def test_brats_reference_table_is_evaluates_table_for_a_model_predicting_the_prior():
    training = _brats_training()
    labels = np.zeros((8, 8, 2), np.uint8)
    labels[3:6, 2:5, 0] = 2
    labels[3, 3, 1] = 3
    test = _brain("test", labels)
    reference = _brats_task().image_blind_scores(training, [test])
    prior_as_image = dataclasses.replace(test, images=_brain("test", majority_label_map(training, 4)).images)
    pd.testing.assert_frame_equal(reference, _brats_task().evaluate(_LabelsInChannelZero(), [prior_as_image], CPU))


def test_brats_reference_refuses_volumes_of_other_shapes():
    training = _brats_training()
    with pytest.raises(ValueError, match=r"label maps of one shape .*'odd': \(8, 8, 3\)"):
        majority_label_map([*training, _brain("odd", np.zeros((8, 8, 3)))], 4)
    with pytest.raises(ValueError, match=r"test subjects \{'odd': \(8, 8, 3\)\} differ in shape .* \(8, 8, 2\)"):
        _brats_task().image_blind_scores(training, [_brain("odd", np.zeros((8, 8, 3)))])
    bad = np.zeros((8, 8, 2), np.uint8)
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="subject bad: labels span 0..7, expected classes 0..3"):
        majority_label_map([_brain("bad", bad)], 4)


PLANES = ("cat", "dog", "eel")


def _patient(subject_id: str, classes: list[int]) -> Volume:
    images = np.random.default_rng(len(classes)).normal(size=(1, 4, 4, len(classes))).astype(np.float32)
    return Volume(subject_id, images, np.zeros((4, 4, len(classes)), np.uint8), (1.0, 1.0, 1.0), np.array(classes))


def _fetal_task() -> FetalPlaneClassification:
    return FetalPlaneClassification(FetalPlaneClassification.Config(), 1, PLANES)


def test_the_majority_class_counts_images_over_the_labelled_subjects_and_breaks_ties_low():
    assert majority_class([_patient("a", [0, 1, 1, 2]), _patient("b", [1, 2, 0])], 3) == 1  # 2, 3 and 2 images
    assert majority_class([_patient("a", [0, 2, 2, 0])], 3) == 0  # tie between cat and eel
    assert majority_class([_patient("a", [2]), _patient("b", [0, 2])], 3) == 2


def test_fetal_reference_predicts_the_majority_for_every_test_image_and_scores_macro_f1_by_hand():
    training = [_patient("a", [0, 1, 1, 2]), _patient("b", [1, 2, 0])]
    true = [0, 1, 2, 2, 1]
    task = _fetal_task()
    table = task.image_blind_scores(training, [_patient("p", true[:2]), _patient("q", true[2:])])
    assert table["predicted_class"].tolist() == ["dog"] * 5
    assert table["subject_id"].tolist() == ["p", "p", "q", "q", "q"] and table["image"].tolist() == [0, 1, 0, 1, 2]
    summary = task.summarise(table)
    # dog: precision 2/5, recall 1, F1 4/7; cat and eel never predicted: F1 0
    assert summary["f1"] == pytest.approx(4 / 21)
    assert summary["f1"] == pytest.approx(f1_score(true, [1] * 5, average="macro", zero_division=0))
    assert summary["accuracy"] == pytest.approx(2 / 5)


class _Constant(nn.Module):
    """Logits that pick ``cls`` for every image."""

    def __init__(self, cls: int):
        super().__init__()
        self.cls = cls

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(torch.full((len(images),), self.cls), len(PLANES)).float()


def test_fetal_reference_table_is_evaluates_table_for_a_constant_model():
    training, test = [_patient("a", [2, 2, 0])], [_patient("p", [0, 1, 2, 2, 1])]
    pd.testing.assert_frame_equal(
        _fetal_task().image_blind_scores(training, test), _fetal_task().evaluate(_Constant(2), test, CPU)
    )


def test_fetal_reference_needs_image_classes_within_the_dataset_classes():
    unlabelled = dataclasses.replace(_patient("a", [0]), slice_classes=None)
    with pytest.raises(ValueError, match=r"subjects \['a'\] have no slice_classes"):
        majority_class([unlabelled], 3)
    with pytest.raises(ValueError, match="subject a: labels span 0..3, expected classes 0..2"):
        majority_class([_patient("a", [0, 3])], 3)


ORGANS = ("left_kidney", "liver")
SPACING = (0.8, 0.8, 2.5)


def _ct(subject_id: str, boxes: dict[int, tuple[slice, ...]], shape: tuple[int, ...] = (16, 16, 16)) -> Volume:
    labels = np.zeros(shape, np.uint8)
    for organ, box in boxes.items():
        labels[box] = organ
    return Volume(subject_id, (labels / 10).astype(np.float32)[None], labels, SPACING)


KIDNEY_A = np.s_[2:6, 3:9, 4:12]  # box [2, 5] x [3, 8] x [4, 11]
KIDNEY_B = np.s_[3:7, 5:11, 6:12]  # box [3, 6] x [5, 10] x [6, 11]
LIVER = np.s_[9:15, 1:7, 0:5]  # box [9, 14] x [1, 6] x [0, 4]


def _ct_task() -> AbdominalOrganLocalisation:
    return AbdominalOrganLocalisation(AbdominalOrganLocalisation.Config(slice_size=16), 1, ORGANS)


def test_the_mean_box_averages_each_coordinate_over_the_subjects_that_hold_the_organ():
    training = [_ct("a", {1: KIDNEY_A}), _ct("b", {1: KIDNEY_B}), _ct("c", {})]
    kidney, liver = mean_boxes(training, 2)
    assert kidney.tolist() == [[2.5, 5.5], [4.0, 9.0], [5.0, 11.0]]  # subject c lacks it: not averaged in
    assert liver is None


def test_ct_reference_distances_by_hand_and_a_liver_no_subject_holds_is_missed():
    """Mean kidney box centre (4.5, 7, 8.5) voxels vs the test kidney's (4, 6, 8): 0.4, 0.8 and 1.25 mm apart; walls
    2.0 | 5.2, 3.2 | 8.0, 12.5 | 30 mm vs 1.6 | 4.8, 2.4 | 7.2, 10 | 30 mm. The liver is missed: its worst distance
    (from its centre (9.6, 3.2, 6.25) mm to the far corner of the 12.8 x 12.8 x 40 mm image)."""
    training = [_ct("a", {1: KIDNEY_A}), _ct("b", {1: KIDNEY_B})]
    table = _ct_task().image_blind_scores(training, [_ct("test", {1: KIDNEY_A, 2: LIVER})])
    kidney = math.sqrt(0.4**2 + 0.8**2 + 1.25**2)
    liver = math.sqrt(9.6**2 + 9.6**2 + 33.75**2)
    assert table.loc[0, "centroid_left_kidney"] == pytest.approx(kidney)
    assert table.loc[0, "wall_left_kidney"] == pytest.approx((0.4 + 0.4 + 0.8 + 0.8 + 2.5 + 0) / 6)
    assert table.loc[0, ["detected_left_kidney", "detected_liver"]].tolist() == [1.0, 0.0]
    assert table.loc[0, "centroid_liver"] == pytest.approx(liver)
    assert table.loc[0, "centroid_mean"] == pytest.approx((kidney + liver) / 2)


def test_ct_reference_box_is_clipped_to_a_smaller_test_image():
    """A kidney at x [14, 19] in 20-voxel-wide training images: in a 16-voxel-wide test image its box is x [14, 15],
    centre 15 voxels vs the test kidney's 4: 11 voxels of 0.8 mm apart."""
    training = [_ct("wide", {1: np.s_[14:20, 3:9, 4:12]}, shape=(20, 16, 16))]
    table = _ct_task().image_blind_scores(training, [_ct("test", {1: KIDNEY_A})])
    assert table.loc[0, "centroid_left_kidney"] == pytest.approx(11 * 0.8)
    assert np.isnan(table.loc[0, "centroid_liver"])  # absent from the test subject: nothing to find


@pytest.mark.parametrize("name", DOWNSTREAM_TASKS.names())
def test_every_reference_gives_the_same_table_for_other_test_images(name):
    cls = DOWNSTREAM_TASKS.get(name)
    data = cls.example_data(np.random.default_rng(0))
    task = cls(cls.Config(), data.channels, data.class_names)
    volumes = list(data.volumes)
    other = [dataclasses.replace(volume, images=np.flip(volume.images, axis=1).copy() * 3 + 1) for volume in volumes]
    pd.testing.assert_frame_equal(task.image_blind_scores(volumes, volumes), task.image_blind_scores(volumes, other))


@pytest.mark.parametrize("name", DOWNSTREAM_TASKS.names())
def test_every_reference_needs_labelled_subjects(name):
    cls = DOWNSTREAM_TASKS.get(name)
    data = cls.example_data(np.random.default_rng(0))
    with pytest.raises(
        ValueError, match="^the image-blind reference needs at least one labelled training subject, got none$"
    ):
        cls(cls.Config(), data.channels, data.class_names).image_blind_scores([], list(data.volumes))
