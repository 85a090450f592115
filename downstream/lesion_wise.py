"""Lesion-wise Dice and HD95 of the BraTS 2023+ challenges (Saluja et al., github.com/rachitsaluja/BraTS-2023-Metrics).

Whole-volume Dice rewards a model for the large lesions and hardly notices a missed or invented small one. The BraTS
2023 evaluation scores each lesion instead, in this order:

1. Lesions of the reference: the reference is dilated ``dilation_iterations`` times (18-connected structuring element
   in 3D, 8-connected in 2D) and split into connected components (26-connected in 3D, 8 in 2D); each reference voxel
   belongs to the lesion of the dilated component it lies in, so fragments closer than the dilation count as one
   lesion. The reference voxels themselves are not changed.
2. Predicted components: connected components of the prediction (26-connected in 3D).
3. For each lesion, its matches are the predicted components that touch the lesion dilated again by
   ``dilation_iterations``; its Dice and HD95 (surface elements, :func:`~ssl_medbench.downstream.metrics.hd95`'s
   ``"surface_elements"``, as the challenge's ``surface_distance``) compare the lesion with the union of its matches.
   A lesion without a match is a false negative: Dice 0, HD95 the policy's one-empty distance (374 mm in BraTS 2023).
4. Predicted components that match no lesion are false positives.
5. Lesions of at most ``volume_threshold_mm3`` are left out of the scores (their matches are not false positives).
6. Lesion-wise Dice = sum of the counted lesions' Dice / (counted lesions + false positives); lesion-wise HD95 =
   (sum of their HD95 + false positives x the one-empty distance) / the same count. No counted lesion and no false
   positive: the policy's both-empty values (Dice 1, HD95 0).

The challenge's parameters: dilation 3 and 50 mm³ for gliomas (BraTS-GLI), SSA and paediatric tumours; dilation 1 and
50 mm³ for meningiomas; dilation 1 and 2 mm³ for metastases. ``dilation_iterations=0`` means no dilation (each
connected component is a lesion and only touching components match), not scipy's "dilate until nothing changes".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy import ndimage

from ssl_medbench.downstream.metrics import (
    BRATS_2023,
    EmptyMaskPolicy,
    as_binary_pair,
    checked_spacing,
    dice,
    empty_mask_policy,
    hd95,
)


@dataclass(frozen=True)
class LesionWiseScores:
    """One mask pair's lesion-wise scores and the lesion counts they come from (counted lesions only)."""

    dice: float
    hd95: float
    true_positives: int
    false_positives: int
    false_negatives: int


def _grown_box(box: tuple[slice, ...], margin: int, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def _union_boxes(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


def lesion_wise_scores(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Sequence[float],
    dilation_iterations: int = 3,
    volume_threshold_mm3: float = 50.0,
    policy: EmptyMaskPolicy | str = BRATS_2023,
) -> LesionWiseScores:
    """Lesion-wise Dice (fraction) and HD95 (mm) of a binary ``pred`` against ``ref`` (2D or 3D), as the module
    docstring describes; ``spacing`` in mm per voxel."""
    pred, ref = as_binary_pair(pred, ref)
    spacing = tuple(checked_spacing(spacing, ref.ndim).tolist())
    policy = empty_mask_policy(policy)
    if (
        isinstance(dilation_iterations, bool)
        or not isinstance(dilation_iterations, Integral)
        or dilation_iterations < 0
    ):
        raise ValueError(f"dilation_iterations {dilation_iterations!r}: expected a whole number >= 0")
    if not 0 <= volume_threshold_mm3 < math.inf:
        raise ValueError(f"volume_threshold_mm3 {volume_threshold_mm3!r}: expected a finite volume >= 0 mm³")
    voxel_mm3 = float(np.prod(spacing))
    connected = ndimage.generate_binary_structure(ref.ndim, ref.ndim)
    grow = ndimage.generate_binary_structure(ref.ndim, 2)
    worst = policy.one_empty_distance(ref.shape, spacing)

    def dilate(mask: np.ndarray) -> np.ndarray:
        return ndimage.binary_dilation(mask, grow, iterations=dilation_iterations) if dilation_iterations else mask

    lesion_groups, _ = ndimage.label(dilate(ref), connected)
    lesions = np.where(ref, lesion_groups, 0)
    components, _ = ndimage.label(pred, connected)
    component_boxes = ndimage.find_objects(components)
    matched: set[int] = set()
    dices, distances, true_positives, false_negatives = [], [], 0, 0
    # every dilated group holds reference voxels, so each lesion index has a box
    for index, lesion_box in enumerate(ndimage.find_objects(lesions), start=1):
        around = _grown_box(lesion_box, dilation_iterations, ref.shape)
        lesion = lesions[around] == index
        touching = np.unique(components[around][dilate(lesion)])
        touching = [int(c) for c in touching if c]
        matched.update(touching)
        if lesion.sum() * voxel_mm3 <= volume_threshold_mm3:
            continue
        if not touching:
            false_negatives += 1
            dices.append(0.0)
            distances.append(worst)
            continue
        true_positives += 1
        box = _union_boxes([lesion_box] + [component_boxes[c - 1] for c in touching])
        lesion_in_box = lesions[box] == index
        matches_in_box = np.isin(components[box], touching)
        dices.append(dice(matches_in_box, lesion_in_box))
        distances.append(hd95(matches_in_box, lesion_in_box, spacing, "surface_elements"))
    false_positives = len(component_boxes) - len(matched)
    scored = len(dices) + false_positives
    if scored == 0:
        return LesionWiseScores(policy.both_empty_overlap, policy.both_empty_distance_mm, 0, 0, 0)
    return LesionWiseScores(
        dice=float(sum(dices) / scored),
        hd95=float((sum(distances) + false_positives * worst) / scored),
        true_positives=true_positives,
        false_positives=false_positives,
        false_negatives=false_negatives,
    )
