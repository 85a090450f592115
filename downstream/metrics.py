"""Overlap and surface-distance metrics on binary numpy masks.

Conventions shared by every function here:

* ``pred`` and ``ref`` are boolean (or 0/1) arrays of the same shape, 2D or 3D.
* Overlap metrics are fractions in [0, 1] (reports multiply by 100 for %).
* Distances are in millimetres, using ``spacing`` (mm per voxel along each axis; None: 1 mm).
* Each docstring states its rule for empty masks; the surface metrics take it from an :class:`EmptyMaskPolicy`
  (:data:`IMAGE_DIAGONAL`, the default, or :data:`BRATS_2023`), and :func:`empty_case` names the case so callers can
  count how often a rule was applied.

"HD95" has three definitions in the tools papers compare against (:data:`HD95_CONVENTIONS`); :func:`hd95` computes
each, and every logged value names its convention (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

from ssl_medbench.downstream.lattice_distances import nearest_distances, within_tolerance
from ssl_medbench.downstream.surface_elements import SurfaceElements, surface_elements


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """``mask`` as a boolean array; a mask of another dtype must hold 0 and 1 only (a label map such as BraTS's 0/2/4
    is not a mask: select its region first)."""
    array = np.asarray(mask)
    if array.dtype == bool:
        return array
    if array.dtype.kind not in "iuf" or not np.all((array == 0) | (array == 1)):
        found = np.unique(array[(array != 0) & (array != 1)] if array.dtype.kind in "iuf" else array)[:5]
        raise ValueError(f"{name} mask of dtype {array.dtype}: expected booleans or 0/1 values, found {found.tolist()}")
    return array.astype(bool)


def as_binary_pair(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``ref`` as boolean arrays of one 2D or 3D shape with at least one voxel, else ValueError."""
    pred, ref = _as_mask(pred, "prediction"), _as_mask(ref, "reference")
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim not in (2, 3) or pred.size == 0:
        raise ValueError(f"masks of shape {pred.shape}: expected 2D or 3D masks with at least one voxel")
    return pred, ref


def empty_case(pred: np.ndarray, ref: np.ndarray) -> str:
    """``"both"``, ``"reference"``, ``"prediction"`` (which mask is empty) or ``"none"``."""
    pred, ref = as_binary_pair(pred, ref)
    pred_empty, ref_empty = not pred.any(), not ref.any()
    if pred_empty and ref_empty:
        return "both"
    return "reference" if ref_empty else "prediction" if pred_empty else "none"


def dice(pred: np.ndarray, ref: np.ndarray, policy: EmptyMaskPolicy | str | None = None) -> float:
    """Dice coefficient 2|P∩R| / (|P|+|R|), unitless in [0, 1].

    Empty masks: exactly one empty -> 0.0 by the formula; both empty -> ``policy.both_empty_overlap``, 1.0 (perfect
    agreement on absence) under both presets and without a policy, as in BraTS 2023.
    """
    pred, ref = as_binary_pair(pred, ref)
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0 if policy is None else empty_mask_policy(policy).both_empty_overlap
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Sensitivity (recall, true-positive rate) TP / (TP + FN), unitless in [0, 1].

    Empty masks: an empty reference has no positives, so sensitivity is undefined: NaN
    (excluded from means by pandas; count the cases with :func:`empty_case`).
    """
    pred, ref = as_binary_pair(pred, ref)
    positives = int(ref.sum())
    if positives == 0:
        return float("nan")
    return int(np.logical_and(pred, ref).sum()) / positives


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Specificity (true-negative rate) TN / (TN + FP) over the whole array, unitless in [0, 1].

    Computed over every voxel of the array (as BraTS and medpy do, hence values near 1 for tumours).
    Empty masks: a reference that covers the whole array has no negatives: NaN.
    """
    pred, ref = as_binary_pair(pred, ref)
    negatives = int((~ref).sum())
    if negatives == 0:
        return float("nan")
    return int(np.logical_and(~pred, ~ref).sum()) / negatives


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image: the largest distance two of its voxels can have."""
    return float(np.sqrt(np.sum(((np.asarray(shape) - 1) * np.asarray(spacing, dtype=float)) ** 2)))


@dataclass(frozen=True)
class EmptyMaskPolicy:
    """What a metric scores when the prediction, the reference or both are empty (no surface to measure)."""

    name: str
    #: Distance (mm) when exactly one mask is empty; None: the image diagonal (:func:`image_diagonal_mm`).
    one_empty_distance_mm: float | None
    #: Distance (mm) when both masks are empty.
    both_empty_distance_mm: float = 0.0
    #: Dice and normalised surface Dice when both masks are empty (perfect agreement on absence).
    both_empty_overlap: float = 1.0
    #: Normalised surface Dice when exactly one mask is empty (Dice is 0 there by its formula).
    one_empty_overlap: float = 0.0

    def __post_init__(self) -> None:
        distances = [self.both_empty_distance_mm] + [d for d in [self.one_empty_distance_mm] if d is not None]
        if not all(0 <= d < math.inf for d in distances):
            raise ValueError(f"empty-mask policy {self.name!r}: distances must be finite and >= 0 mm, got {distances}")
        if not all(0 <= o <= 1 for o in (self.both_empty_overlap, self.one_empty_overlap)):
            raise ValueError(f"empty-mask policy {self.name!r}: Dice and NSD values must lie in [0, 1]")

    def distance(self, case: str, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """The distance scored for :func:`empty_case` ``case`` (``"both"``, ``"reference"`` or ``"prediction"``)."""
        return self.both_empty_distance_mm if case == "both" else self.one_empty_distance(shape, spacing)

    def one_empty_distance(self, shape: Sequence[int], spacing: Sequence[float]) -> float:
        """The distance scored when exactly one mask is empty, in an image of ``shape`` at ``spacing``."""
        return image_diagonal_mm(shape, spacing) if self.one_empty_distance_mm is None else self.one_empty_distance_mm

    def overlap(self, case: str) -> float:
        """The overlap (Dice, NSD) scored for :func:`empty_case` ``case``."""
        return self.both_empty_overlap if case == "both" else self.one_empty_overlap

    def describe(self) -> str:
        """One line for reports: the rule of each case."""
        one = "the image diagonal" if self.one_empty_distance_mm is None else f"{self.one_empty_distance_mm:g} mm"
        return (
            f"{self.name}: both masks empty -> Dice and NSD {self.both_empty_overlap:g}, HD95 "
            f"{self.both_empty_distance_mm:g} mm; one empty -> Dice and NSD {self.one_empty_overlap:g}, HD95 {one}"
        )


#: The suite's default: the worst distance possible in the image when one mask is empty.
IMAGE_DIAGONAL = EmptyMaskPolicy("image_diagonal", one_empty_distance_mm=None)
#: The BraTS 2023+ evaluation (Saluja et al., github.com/rachitsaluja/BraTS-2023-Metrics): 374 mm, about the diagonal of
#: its 240x240x155 mm volume, when one mask is empty; Dice 1 and HD95 0 when both are.
BRATS_2023 = EmptyMaskPolicy("brats2023", one_empty_distance_mm=374.0)
EMPTY_MASK_POLICIES = {policy.name: policy for policy in (IMAGE_DIAGONAL, BRATS_2023)}

#: The HD95 definitions :func:`hd95` computes, each with the tool it agrees with.
HD95_CONVENTIONS = {
    "medpy": "95th percentile of both directed voxel-surface distance sets pooled (medpy.metric.binary.hd95)",
    "max_directed": "larger of the two directed 95th percentiles of voxel-surface distances (MONAI, MetricsReloaded)",
    "surface_elements": "larger of the two area-weighted directed 95th percentiles of surface elements "
    "(DeepMind surface-distance compute_robust_hausdorff; BraTS 2023+)",
}


#: Voxel sizes accepted (mm): far beyond any scanner on both sides, near enough to 1 that squared distances stay
#: exact to double precision.
VOXEL_SIZE_RANGE_MM = (1e-6, 1e6)


def checked_spacing(spacing: Sequence[float] | None, ndim: int) -> np.ndarray:
    """``spacing`` (mm per voxel along each of ``ndim`` axes; None: 1 mm) as a float array, else ValueError."""
    spacing_mm = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=float)
    if spacing_mm.shape != (ndim,):
        raise ValueError(f"spacing {spacing_mm.tolist()} does not match a {ndim}D mask")
    low, high = VOXEL_SIZE_RANGE_MM
    if not np.all((spacing_mm >= low) & (spacing_mm <= high)):
        raise ValueError(f"spacing {spacing_mm.tolist()}: every voxel size must be between {low:g} and {high:g} mm")
    return spacing_mm


def empty_mask_policy(policy: EmptyMaskPolicy | str) -> EmptyMaskPolicy:
    """``policy`` itself, or the preset of :data:`EMPTY_MASK_POLICIES` it names, else ValueError."""
    if isinstance(policy, EmptyMaskPolicy):
        return policy
    if isinstance(policy, str) and policy in EMPTY_MASK_POLICIES:
        return EMPTY_MASK_POLICIES[policy]
    raise ValueError(
        f"empty-mask policy {policy!r}: expected an EmptyMaskPolicy or one of {', '.join(EMPTY_MASK_POLICIES)}"
    )


def _union_box(pred: np.ndarray, ref: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of both (non-empty) masks together, narrowed one axis at a time (each reduction runs on the
    part of the array the earlier axes left)."""
    union = np.logical_or(pred, ref)
    box: list[slice] = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        occupied = np.flatnonzero(union[tuple(box)].any(axis=others))
        box.append(slice(int(occupied[0]), int(occupied[-1]) + 1))
    return tuple(box)


def _voxel_surface(mask: np.ndarray) -> np.ndarray:
    """Indices of the mask's surface voxels: the voxels of the mask with a face-connected neighbour outside it (the
    mask minus its erosion by the face-connected cross), voxels beyond the array counting as outside."""
    padded = np.pad(mask, 1)
    interior = mask.copy()
    for axis in range(mask.ndim):
        for start in (0, 2):
            neighbour = [slice(1, -1)] * mask.ndim
            neighbour[axis] = slice(start, start + mask.shape[axis])
            interior &= padded[tuple(neighbour)]
    return np.argwhere(mask & ~interior)


def _voxel_surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each pred-surface voxel to the ref surface, and from each ref-surface voxel to the pred
    surface, computed on the union bounding box only."""
    box = _union_box(pred, ref)
    pred_surface, ref_surface = _voxel_surface(pred[box]), _voxel_surface(ref[box])
    return nearest_distances(pred_surface, ref_surface, spacing), nearest_distances(ref_surface, pred_surface, spacing)


def _surface_elements_pair(pred: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> tuple[SurfaceElements, ...]:
    """The surface elements of pred and of ref (:mod:`~ssl_medbench.downstream.surface_elements`) on the union
    bounding box only."""
    box = _union_box(pred, ref)
    return surface_elements(pred[box], spacing), surface_elements(ref[box], spacing)


def _area_weighted_percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    """The smallest distance below which ``percent`` % of the surface area lies (no interpolation): DeepMind's robust
    Hausdorff rule, elements ordered by distance and then area as it orders them."""
    order = np.lexsort((areas, distances))
    cumulative = np.cumsum(areas[order]) / np.sum(areas[order])
    index = int(np.searchsorted(cumulative, percent / 100.0))
    return float(distances[order][min(index, len(distances) - 1)])


def hd95(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None = None,
    convention: str = "medpy",
    policy: EmptyMaskPolicy | str = IMAGE_DIAGONAL,
) -> float:
    """95th percentile Hausdorff distance in mm, under one of :data:`HD95_CONVENTIONS`.

    * ``"medpy"``: the 95th percentile (numpy's linear interpolation) of the union of both directed distance sets
      between surface voxels (the mask minus its erosion by the face-connected cross: 6 neighbours in 3D, 4 in 2D);
      equals ``medpy.metric.binary.hd95(pred, ref, spacing)``.
    * ``"max_directed"``: ``max(P95(d(pred -> ref)), P95(d(ref -> pred)))`` over the same surface voxels; equals
      MONAI's ``compute_hausdorff_distance(..., percentile=95)`` (MetricsReloaded's current HD95 has the same definition).
    * ``"surface_elements"``: the larger of the two directed percentiles in which each surface element
      (:mod:`~ssl_medbench.downstream.surface_elements`) counts by its area and the percentile is the first distance
      reaching 95 % of the area; equals ``surface_distance.compute_robust_hausdorff(..., 95)``, used by BraTS 2023+.

    Empty masks (the references raise or return inf): scored by ``policy``; the default gives 0 mm when both are
    empty and the image diagonal when one is (:data:`IMAGE_DIAGONAL`), :data:`BRATS_2023` gives 0 and 374 mm.
    """
    if not isinstance(convention, str) or convention not in HD95_CONVENTIONS:
        raise ValueError(f"hd95 convention {convention!r}: expected one of {', '.join(HD95_CONVENTIONS)}")
    policy = empty_mask_policy(policy)
    pred, ref = as_binary_pair(pred, ref)
    spacing_mm = checked_spacing(spacing, pred.ndim)
    case = empty_case(pred, ref)
    if case != "none":
        return policy.distance(case, pred.shape, spacing_mm)
    if convention == "surface_elements":
        pred_elements, ref_elements = _surface_elements_pair(pred, ref, spacing_mm)
        pred_to_ref = nearest_distances(pred_elements.corners, ref_elements.corners, spacing_mm)
        ref_to_pred = nearest_distances(ref_elements.corners, pred_elements.corners, spacing_mm)
        return max(
            _area_weighted_percentile(pred_to_ref, pred_elements.areas, 95),
            _area_weighted_percentile(ref_to_pred, ref_elements.areas, 95),
        )
    pred_to_ref, ref_to_pred = _voxel_surface_distances(pred, ref, spacing_mm)
    if convention == "medpy":
        return float(np.percentile(np.hstack((pred_to_ref, ref_to_pred)), 95))
    return float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))


def normalized_surface_dice(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float] | None,
    tolerance_mm: float,
    policy: EmptyMaskPolicy | str = IMAGE_DIAGONAL,
) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (Nikolov et al. 2021), unitless in [0, 1].

    The area of pred's surface elements within ``tolerance_mm`` of ref's surface plus the area of ref's within the
    tolerance of pred's, over the total area of both surfaces (surface elements as for :func:`hd95`'s
    ``"surface_elements"``); equals ``surface_distance.compute_surface_dice_at_tolerance``. MetricsReloaded recommends
    it beside Dice as the boundary metric.

    Empty masks (the reference gives NaN when both are empty): ``policy.overlap``; 1 when both are empty and 0 when one
    is, under both presets.
    """
    if isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, Real) or not 0 <= tolerance_mm < math.inf:
        raise ValueError(f"NSD tolerance {tolerance_mm!r} mm: expected a distance of 0 mm or more")
    policy = empty_mask_policy(policy)
    pred, ref = as_binary_pair(pred, ref)
    spacing_mm = checked_spacing(spacing, pred.ndim)
    case = empty_case(pred, ref)
    if case != "none":
        return policy.overlap(case)
    pred_elements, ref_elements = _surface_elements_pair(pred, ref, spacing_mm)
    pred_near = within_tolerance(pred_elements.corners, ref_elements.corners, spacing_mm, tolerance_mm)
    ref_near = within_tolerance(ref_elements.corners, pred_elements.corners, spacing_mm, tolerance_mm)
    within = np.sum(pred_elements.areas[pred_near]) + np.sum(ref_elements.areas[ref_near])
    return float(within / (np.sum(pred_elements.areas) + np.sum(ref_elements.areas)))
