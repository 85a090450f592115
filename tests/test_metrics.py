"""Metrics against hand-computed values and against medpy (the reference for hd95)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from ssl_medbench.downstream.metrics import (
    dice,
    empty_case,
    hd95,
    image_diagonal_mm,
    sensitivity,
    specificity,
)


def _masks() -> tuple[np.ndarray, np.ndarray]:
    """pred: 4 voxels, ref: 3 voxels, overlap 2, in a 4x4 image (16 voxels)."""
    pred = np.zeros((4, 4), bool)
    ref = np.zeros((4, 4), bool)
    pred[0, 0:4] = True
    ref[0, 2:4] = True
    ref[1, 0] = True
    return pred, ref


def test_overlap_metrics_match_hand_computed_values():
    pred, ref = _masks()
    # TP = 2, FP = 2, FN = 1, TN = 11
    assert dice(pred, ref) == pytest.approx(2 * 2 / (4 + 3))
    assert sensitivity(pred, ref) == pytest.approx(2 / 3)
    assert specificity(pred, ref) == pytest.approx(11 / 13)


def test_overlap_metrics_agree_with_medpy_on_random_masks():
    rng = np.random.default_rng(1)
    for _ in range(10):
        pred, ref = rng.random((9, 8, 7)) > 0.6, rng.random((9, 8, 7)) > 0.5
        assert dice(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref), abs=1e-12)
        assert sensitivity(pred, ref) == pytest.approx(medpy_binary.sensitivity(pred, ref), abs=1e-12)
        assert specificity(pred, ref) == pytest.approx(medpy_binary.specificity(pred, ref), abs=1e-12)


def test_empty_mask_rules():
    empty = np.zeros((5, 6), bool)
    full = np.zeros((5, 6), bool)
    full[2, 3] = True
    diagonal = math.hypot(4 * 2.0, 5 * 0.5)
    assert empty_case(empty, empty) == "both"
    assert empty_case(empty, full) == "prediction"
    assert empty_case(full, empty) == "reference"
    assert empty_case(full, full) == "none"
    assert dice(empty, empty) == 1.0
    assert dice(empty, full) == 0.0 and dice(full, empty) == 0.0
    assert math.isnan(sensitivity(full, empty))
    assert sensitivity(empty, full) == 0.0
    assert math.isnan(specificity(empty, np.ones((5, 6), bool)))
    assert hd95(empty, empty, (2.0, 0.5)) == 0.0
    assert hd95(empty, full, (2.0, 0.5)) == pytest.approx(diagonal)
    assert hd95(full, empty, (2.0, 0.5)) == pytest.approx(diagonal)
    assert image_diagonal_mm((5, 6), (2.0, 0.5)) == pytest.approx(diagonal)
    assert hd95(empty, full, (2.0, 0.5), "max_directed") == pytest.approx(diagonal)


def test_hd95_hand_computed_with_anisotropic_spacing():
    pred = np.zeros((10, 10), bool)
    ref = np.zeros((10, 10), bool)
    pred[2, 2] = True
    ref[5, 2] = True  # 3 voxels apart along axis 0 at 2 mm per voxel
    assert hd95(pred, ref, (2.0, 1.0)) == pytest.approx(6.0)


def test_pooled_and_max_directed_hd95_differ_as_defined():
    ref = np.zeros((1, 12), bool)
    pred = np.zeros((1, 12), bool)
    ref[0, 0] = True
    pred[0, 0] = pred[0, 10] = True
    # pred -> ref: {0, 10}; ref -> pred: {0}. Pooled {0, 0, 10}: P95 = 0.9 * 10; directed P95s: 9.5 and 0.
    assert hd95(pred, ref) == pytest.approx(9.0)
    assert hd95(pred, ref, convention="max_directed") == pytest.approx(9.5)


def _random_blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5))
    mask = field > np.quantile(field, rng.uniform(0.6, 0.95))
    if rng.random() < 0.3:  # sometimes touch the image border, where erosion must behave as medpy's
        mask[0] |= rng.random(shape[1:]) > 0.5
    return mask


@pytest.mark.parametrize("case", range(60))
def test_hd95_matches_medpy_to_1e9(case: int):
    rng = np.random.default_rng(case)
    shape = tuple(rng.integers(8, 30, size=2 if case % 3 == 0 else 3))
    pred, ref = _random_blob(rng, shape), _random_blob(rng, shape)
    if not pred.any() or not ref.any():
        pytest.skip("medpy raises on empty masks")
    spacing = tuple(rng.uniform(0.3, 3.0, size=len(shape)))
    assert abs(hd95(pred, ref, spacing) - medpy_binary.hd95(pred, ref, voxelspacing=spacing)) <= 1e-9


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="spacing"):
        hd95(np.ones((3, 3)), np.ones((3, 3)), (1.0, 1.0, 1.0))


def _directed_p95_by_distance_transform(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """MONAI's HD95 from scipy alone: the full-image surfaces (mask minus its face-connected erosion) and Euclidean
    distance transforms in mm, the larger of the two directed 95th percentiles."""

    def surface(mask: np.ndarray) -> np.ndarray:
        return mask ^ ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1))

    pred_surface, ref_surface = surface(pred), surface(ref)
    pred_to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    ref_to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95))


@pytest.mark.parametrize("case", range(12))
def test_max_directed_hd95_matches_scipy_distance_transforms_and_is_symmetric(case: int):
    """hd95's max_directed convention against an independent full-image computation, with anisotropic spacing; swapping the masks
    swaps the two directed sets, so the larger percentile, hence the value, stays the same."""
    rng = np.random.default_rng(100 + case)
    shape = tuple(rng.integers(8, 20, size=2 if case % 2 == 0 else 3))
    pred, ref = _random_blob(rng, shape), _random_blob(rng, shape)
    assert pred.any() and ref.any()  # the seeds give masks with a surface (an empty mask is scored by a rule)
    spacing = tuple(rng.uniform(0.3, 3.0, size=len(shape)))
    expected = _directed_p95_by_distance_transform(pred, ref, spacing)
    assert hd95(pred, ref, spacing, "max_directed") == pytest.approx(expected, abs=1e-9)
    assert hd95(ref, pred, spacing, "max_directed") == pytest.approx(expected, abs=1e-9)


def test_max_directed_hd95_takes_the_larger_percentile_in_either_order():
    """The 1D case of test_pooled_and_max_directed_hd95_differ_as_defined with the masks swapped: still 9.5."""
    ref = np.zeros((1, 12), bool)
    pred = np.zeros((1, 12), bool)
    ref[0, 0] = True
    pred[0, 0] = pred[0, 10] = True
    assert hd95(ref, pred, convention="max_directed") == pytest.approx(9.5)
    assert hd95(ref, pred, (1.0, 2.0), "max_directed") == pytest.approx(19.0)


def test_one_empty_mask_without_spacing_scores_the_diagonal_in_voxels():
    """spacing=None means 1 mm per voxel: the empty-mask penalty is the diagonal of the image counted in voxels."""
    empty = np.zeros((5, 6), bool)
    full = np.zeros((5, 6), bool)
    full[2, 3] = True
    diagonal = math.hypot(4, 5)
    assert hd95(empty, full) == pytest.approx(diagonal)
    assert hd95(full, empty) == pytest.approx(diagonal)
    assert hd95(empty, full, convention="max_directed") == pytest.approx(diagonal)
    assert hd95(empty, np.zeros((5, 6), bool)) == 0.0
