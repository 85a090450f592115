"""Overlap and surface-distance metrics on binary numpy masks.

Conventions shared by every function here:

* ``pred`` and ``ref`` are boolean (or 0/1) arrays of the same shape, 2D or 3D.
* Overlap metrics are fractions in [0, 1] (reports multiply by 100 for %).
* Distances are in millimetres, using ``spacing`` (mm per voxel along each axis).
* Each docstring states its rule for empty masks; :func:`empty_case` names the case so callers can
  count how often a rule was applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def _as_bool_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool, copy=False)
    ref = np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    return pred, ref


def empty_case(pred: np.ndarray, ref: np.ndarray) -> str:
    """``"both"``, ``"reference"``, ``"prediction"`` (which mask is empty) or ``"none"``."""
    pred, ref = _as_bool_pair(pred, ref)
    pred_empty, ref_empty = not pred.any(), not ref.any()
    if pred_empty and ref_empty:
        return "both"
    return "reference" if ref_empty else "prediction" if pred_empty else "none"


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient 2|P∩R| / (|P|+|R|), unitless in [0, 1].

    Empty masks: both empty -> 1.0 (perfect agreement on absence); exactly one empty -> 0.0.
    """
    pred, ref = _as_bool_pair(pred, ref)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Sensitivity (recall, true-positive rate) TP / (TP + FN), unitless in [0, 1].

    Empty masks: an empty reference has no positives, so sensitivity is undefined: NaN
    (excluded from means by pandas; count the cases with :func:`empty_case`).
    """
    pred, ref = _as_bool_pair(pred, ref)
    positives = int(ref.sum())
    if positives == 0:
        return float("nan")
    return int(np.logical_and(pred, ref).sum()) / positives


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Specificity (true-negative rate) TN / (TN + FP) over the whole array, unitless in [0, 1].

    Computed over every voxel of the array (as BraTS and medpy do, hence values near 1 for tumours).
    Empty masks: a reference that covers the whole array has no negatives: NaN.
    """
    pred, ref = _as_bool_pair(pred, ref)
    negatives = int((~ref).sum())
    if negatives == 0:
        return float("nan")
    return int(np.logical_and(~pred, ~ref).sum()) / negatives


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image: the largest distance two of its voxels can have."""
    return float(np.sqrt(np.sum(((np.asarray(shape) - 1) * np.asarray(spacing, dtype=float)) ** 2)))


def _surface_points_mm(mask: np.ndarray, offset: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Coordinates (mm) of the mask's surface voxels: the mask minus its erosion by the face-connected cross."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    surface = mask ^ ndimage.binary_erosion(mask, structure=structure, iterations=1)
    return (np.argwhere(surface) + offset) * spacing


def _directed_surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each pred-surface voxel to the ref surface, and from each ref-surface voxel to the pred surface.

    Works on the union bounding box of both masks (padded by one voxel so that erosion at the crop
    border behaves as in the full image) and finds nearest surface voxels with a KD-tree, which
    gives the same distances as medpy's full-volume Euclidean distance transform.
    """
    spacing_mm = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, dtype=float)
    if spacing_mm.shape != (pred.ndim,):
        raise ValueError(f"spacing {tuple(spacing_mm)} does not match a {pred.ndim}D mask")
    union = np.logical_or(pred, ref)
    corners = np.argwhere(union)
    low = corners.min(axis=0)
    high = corners.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(low, high))
    pred_box = np.pad(pred[box], 1)
    ref_box = np.pad(ref[box], 1)
    offset = low - 1
    pred_surface = _surface_points_mm(pred_box, offset, spacing_mm)
    ref_surface = _surface_points_mm(ref_box, offset, spacing_mm)
    pred_to_ref = cKDTree(ref_surface).query(pred_surface, k=1)[0]
    ref_to_pred = cKDTree(pred_surface).query(ref_surface, k=1)[0]
    return pred_to_ref, ref_to_pred


def _empty_distance(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None) -> float | None:
    case = empty_case(pred, ref)
    if case == "none":
        return None
    if case == "both":
        return 0.0
    return image_diagonal_mm(pred.shape, np.ones(pred.ndim) if spacing is None else spacing)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile Hausdorff distance in mm, pooled: medpy-compatible.

    The 95th percentile (numpy's linear interpolation) of the union of both directed
    surface-distance sets, surfaces taken by erosion with the face-connected (6-neighbour in 3D,
    4 in 2D) structuring element; equals ``medpy.metric.binary.hd95(pred, ref, spacing)``.

    Empty masks (medpy raises): both empty -> 0.0 mm; exactly one empty -> the image diagonal in mm
    (:func:`image_diagonal_mm`), the worst distance possible in that image.
    """
    pred, ref = _as_bool_pair(pred, ref)
    empty = _empty_distance(pred, ref, spacing)
    if empty is not None:
        return empty
    pred_to_ref, ref_to_pred = _directed_surface_distances(pred, ref, spacing)
    return float(np.percentile(np.hstack((pred_to_ref, ref_to_pred)), 95))


def hd95_max_directed(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile Hausdorff distance in mm, MONAI's definition: the larger of the two directed 95th percentiles.

    ``max(P95(d(pred -> ref)), P95(d(ref -> pred)))``, same surfaces and empty-mask rules as :func:`hd95`.
    Never smaller than the pooled variant's lower directed percentile; often larger than :func:`hd95`.
    """
    pred, ref = _as_bool_pair(pred, ref)
    empty = _empty_distance(pred, ref, spacing)
    if empty is not None:
        return empty
    pred_to_ref, ref_to_pred = _directed_surface_distances(pred, ref, spacing)
    return float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))
