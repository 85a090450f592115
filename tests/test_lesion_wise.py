"""BraTS 2023 lesion-wise Dice and HD95 on hand-made cases, computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssl_medbench.downstream.lesion_wise import LesionWiseScores, lesion_wise_scores
from ssl_medbench.downstream.metrics import BRATS_2023, IMAGE_DIAGONAL, dice, hd95

SPACING = (1.0, 1.0, 1.0)


def _volume() -> np.ndarray:
    return np.zeros((40, 40, 20), bool)


def test_two_lesions_one_missed_and_one_false_positive():
    """Lesion A (125 mm³) found exactly: Dice 1, HD95 0. Lesion B (125 mm³) missed: Dice 0, HD95 374. One predicted
    component far from both: a false positive, Dice 0, HD95 374. Lesion-wise Dice (1 + 0) / (2 + 1), HD95
    (0 + 374 + 374) / 3."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:10] = True
    ref[25:30, 25:30, 5:10] = True
    pred[5:10, 5:10, 5:10] = True
    pred[5:8, 30:33, 12:15] = True
    scores = lesion_wise_scores(pred, ref, SPACING, dilation_iterations=3, volume_threshold_mm3=50, policy=BRATS_2023)
    assert scores == LesionWiseScores(
        dice=pytest.approx(1 / 3), hd95=pytest.approx(748 / 3), true_positives=1, false_positives=1, false_negatives=1
    )


@pytest.mark.parametrize("corner", [0, 12])
def test_a_partly_found_lesion_scores_its_own_dice_and_hd95(corner: int):
    """One lesion (in the array's corner, or inside it), predicted one voxel short along axis 0, plus a fragment 2
    voxels from it (within the dilation): the fragment is one of the lesion's matches, not a false positive, and the
    lesion's scores are those of the union, at anisotropic spacing."""
    ref, pred = _volume(), _volume()
    ref[corner : corner + 10, corner : corner + 10, 0:5] = True
    pred[corner + 1 : corner + 10, corner : corner + 10, 0:5] = True
    pred[corner + 12, corner + 2 : corner + 4, 1:3] = True
    spacing = (0.8, 1.1, 2.5)
    scores = lesion_wise_scores(pred, ref, spacing, policy=BRATS_2023)
    assert scores.false_positives == 0 and scores.true_positives == 1 and scores.false_negatives == 0
    assert scores.dice == pytest.approx(dice(pred, ref))
    # 95 % of the surfaces lie within the missed row's 0.8 mm
    assert scores.hd95 == pytest.approx(hd95(pred, ref, spacing, "surface_elements")) == 0.8


def test_each_lesion_is_scored_with_its_own_matches_whole():
    """Two lesions, each matched by its own component; the first component reaches 3 voxels past its lesion along
    axis 2, beyond the second lesion's extent: lesion A's Dice is 2 * 125 / (125 + 325), B's is 1."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:10] = ref[25:30, 5:10, 5:10] = True
    pred[5:10, 5:10, 5:18] = pred[25:30, 5:10, 5:10] = True
    scores = lesion_wise_scores(pred, ref, SPACING)
    assert (scores.true_positives, scores.false_positives) == (2, 0)
    assert scores.dice == pytest.approx((2 * 125 / 450 + 1) / 2)


def test_missed_lesions_are_counted_wherever_they_come():
    """Two missed lesions before a found one: three scored, two false negatives."""
    ref, pred = _volume(), _volume()
    ref[2:7, 5:10, 5:10] = ref[14:19, 5:10, 5:10] = ref[30:35, 5:10, 5:10] = True
    pred[30:35, 5:10, 5:10] = True
    scores = lesion_wise_scores(pred, ref, SPACING)
    assert scores == LesionWiseScores(pytest.approx(1 / 3), pytest.approx(2 * 374 / 3), 1, 0, 2)


def test_components_are_26_connected_and_matches_reach_through_the_18_connected_dilation():
    """The prediction: the lesion plus a diagonal chain of voxels leaving its corner (one 26-connected component, so
    neither a false positive nor cut short), a voxel 2 + 2 voxels off the corner's diagonal in one plane (within 3
    dilations by the 18-connected element) and one 3 + 3 + 3 off (out of its reach: a false positive)."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:10] = pred[5:10, 5:10, 5:10] = True
    for step in range(1, 8):  # (10, 10, 10) ... (16, 16, 16)
        pred[9 + step, 9 + step, 9 + step] = True
    pred[11, 11, 5] = True  # 2 + 2 voxels off the lesion's edge (9, 9, z) in one plane, away from the chain
    pred[2, 2, 2] = True  # 3, 3, 3 before the opposite corner (5, 5, 5)
    scores = lesion_wise_scores(pred, ref, SPACING)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (1, 1, 0)
    assert scores.dice == pytest.approx((2 * 125 / (125 + 125 + 7 + 1)) / 2)


def test_the_defaults_are_the_brats_2023_glioma_parameters():
    """Dilation 3: fragments 7 voxels apart stay two lesions (4 dilations would merge them); 50 mm³: a lesion of 50
    voxels at 1 mm is not scored."""
    ref, pred = _volume(), _volume()
    ref[2:7, 5:10, 5:10] = ref[14:19, 5:10, 5:10] = True  # gap of 7 voxels (7 .. 13)
    pred[2:7, 5:10, 5:10] = True
    assert lesion_wise_scores(pred, ref, SPACING).false_negatives == 1
    assert lesion_wise_scores(pred, ref, SPACING, dilation_iterations=4).false_negatives == 0
    small = _volume()
    small[5:10, 5:10, 5:7] = True  # 50 voxels
    assert lesion_wise_scores(_volume(), small, SPACING) == LesionWiseScores(1.0, 0.0, 0, 0, 0)
    small[10, 5, 5] = True  # 51
    assert lesion_wise_scores(_volume(), small, SPACING) == LesionWiseScores(0.0, 374.0, 0, 0, 1)


def test_without_dilation_fragments_touching_at_a_corner_are_one_lesion():
    """26-connected lesions: two cubes meeting at one corner are one lesion even without dilation, found by a
    prediction of one of them (Dice 2 * 125 / 375)."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:10] = ref[10:15, 10:15, 10:15] = True
    pred[5:10, 5:10, 5:10] = True
    scores = lesion_wise_scores(pred, ref, SPACING, dilation_iterations=0)
    assert (scores.true_positives, scores.false_negatives) == (1, 0)
    assert scores.dice == pytest.approx(2 * 125 / 375)


def test_a_lesions_hd95_is_the_surface_element_convention():
    """In 2D, a one-pixel lesion matched by itself and by a pixel 10 away (within 10 dilations): the lesion's HD95 is
    the surface-element value, 10 mm (the medpy convention would give 9)."""
    ref, pred = np.zeros((1, 12), bool), np.zeros((1, 12), bool)
    ref[0, 0] = pred[0, 0] = pred[0, 10] = True
    scores = lesion_wise_scores(pred, ref, (1.0, 1.0), dilation_iterations=10, volume_threshold_mm3=0)
    assert scores.hd95 == pytest.approx(10.0) and scores.false_positives == 0


def test_fragments_closer_than_the_dilation_are_one_lesion():
    """Two fragments 2 voxels apart: one lesion with dilation 3 (both found: Dice of the union), two with dilation 0,
    where the prediction covering only one leaves the other missed."""
    ref, pred = _volume(), _volume()
    ref[10:15, 10:15, 5:10] = True
    ref[17:22, 10:15, 5:10] = True
    pred[10:15, 10:15, 5:10] = True
    merged = lesion_wise_scores(pred, ref, SPACING, dilation_iterations=3, volume_threshold_mm3=50)
    assert merged.true_positives == 1 and merged.false_negatives == 0
    assert merged.dice == pytest.approx(2 * 125 / (125 + 250))
    split = lesion_wise_scores(pred, ref, SPACING, dilation_iterations=0, volume_threshold_mm3=50)
    assert (split.true_positives, split.false_negatives) == (1, 1)
    assert split.dice == pytest.approx(0.5) and split.hd95 == pytest.approx(374 / 2)


def test_small_lesions_are_not_scored_and_their_matches_are_not_false_positives():
    """A 27 mm³ lesion (below 50 mm³) predicted exactly and a 125 mm³ lesion predicted exactly: only the large one is
    scored; the small one's prediction is neither scored nor a false positive."""
    ref, pred = _volume(), _volume()
    ref[5:8, 5:8, 5:8] = pred[5:8, 5:8, 5:8] = True
    ref[25:30, 25:30, 5:10] = pred[25:30, 25:30, 5:10] = True
    scores = lesion_wise_scores(pred, ref, SPACING, volume_threshold_mm3=50)
    assert scores == LesionWiseScores(1.0, 0.0, 1, 0, 0)
    # at 0.5 mm voxels the large lesion is 125 / 8 mm³: nothing is counted, the both-empty values
    assert lesion_wise_scores(pred, ref, (0.5, 0.5, 0.5), volume_threshold_mm3=50) == LesionWiseScores(
        1.0, 0.0, 0, 0, 0
    )


def test_a_lesion_exactly_at_the_threshold_is_not_scored_and_volumes_use_the_spacing():
    """50 voxels at 1 x 1 x 2 mm are 100 mm³: scored above 99 mm³, not at 100 (the threshold excludes itself)."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:7] = True  # 50 voxels
    assert lesion_wise_scores(pred, ref, (1.0, 1.0, 2.0), volume_threshold_mm3=99).false_negatives == 1
    assert lesion_wise_scores(pred, ref, (1.0, 1.0, 2.0), volume_threshold_mm3=100) == LesionWiseScores(1.0, 0, 0, 0, 0)


def test_a_component_touching_two_lesions_counts_for_both():
    """One predicted slab bridging two lesions 10 voxels apart: it matches both (no false positive), and each lesion's
    Dice compares the lesion with the whole slab."""
    ref, pred = _volume(), _volume()
    ref[5:10, 5:10, 5:10] = True
    ref[20:25, 5:10, 5:10] = True
    pred[5:25, 5:10, 5:10] = True
    scores = lesion_wise_scores(pred, ref, SPACING)
    assert (scores.true_positives, scores.false_positives, scores.false_negatives) == (2, 0, 0)
    assert scores.dice == pytest.approx(2 * 125 / (125 + 500))


def test_empty_cases_follow_the_policy():
    empty, lesion = _volume(), _volume()
    lesion[5:10, 5:10, 5:10] = True
    assert lesion_wise_scores(empty, empty, SPACING) == LesionWiseScores(1.0, 0.0, 0, 0, 0)
    assert lesion_wise_scores(lesion, empty, SPACING) == LesionWiseScores(0.0, 374.0, 0, 1, 0)
    assert lesion_wise_scores(empty, lesion, SPACING) == LesionWiseScores(0.0, 374.0, 0, 0, 1)
    diagonal = np.sqrt(39**2 + 39**2 + 19**2)
    missed = lesion_wise_scores(empty, lesion, SPACING, policy=IMAGE_DIAGONAL)
    assert missed.hd95 == pytest.approx(diagonal)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="prediction shape"):
        lesion_wise_scores(np.zeros((3, 3)), np.zeros((3, 4)), (1.0, 1.0))
    masks = np.zeros((3, 3)), np.zeros((3, 3))
    with pytest.raises(ValueError, match="^dilation_iterations -1: expected a whole number >= 0$"):
        lesion_wise_scores(*masks, (1.0, 1.0), dilation_iterations=-1)
    with pytest.raises(ValueError, match="^dilation_iterations 2.5: expected a whole number >= 0$"):
        lesion_wise_scores(*masks, (1.0, 1.0), dilation_iterations=2.5)
    for threshold in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=f"^volume_threshold_mm3 {threshold}: expected a finite volume >= 0 mm³$"):
            lesion_wise_scores(*masks, (1.0, 1.0), volume_threshold_mm3=threshold)
    with pytest.raises(ValueError, match="spacing \\[1.0, 1.0, 0.1\\] does not match a 2D mask"):
        lesion_wise_scores(*masks, (1.0, 1.0, 0.1))
    with pytest.raises(ValueError, match="every voxel size must be between"):
        lesion_wise_scores(*masks, (0.0, 1.0))
    with pytest.raises(
        ValueError, match="reference mask of dtype int64: expected booleans or 0/1 values, found \\[2\\]"
    ):
        lesion_wise_scores(np.zeros((3, 3), int), np.full((3, 3), 2), (1.0, 1.0))
    with pytest.raises(ValueError, match="empty-mask policy 'brats2021'"):
        lesion_wise_scores(*masks, (1.0, 1.0), policy="brats2021")
    assert lesion_wise_scores(*masks, (1.0, 1.0), policy="image_diagonal") == LesionWiseScores(1.0, 0.0, 0, 0, 0)
    assert lesion_wise_scores(np.zeros((3, 3)), np.zeros((3, 3)), (1.0, 1.0), volume_threshold_mm3=0).dice == 1.0
