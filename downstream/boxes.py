"""Bounding boxes of organs and the localisation metrics of de Vos et al. (2017), as used by Chen et al. (2019, Table 4).

A box is given per axis by the first and last voxel index it covers (inclusive). In mm, a box's walls
lie at the outer faces of those voxels: ``first * spacing`` and ``(last + 1) * spacing``.

* centroid distance: Euclidean distance in mm between the centres of the predicted and reference box;
* wall distance: mean over the six walls of the absolute distance in mm between corresponding walls.

Both are undefined (NaN) when either box is missing: a missed organ is counted separately, never
averaged as zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = np.ndarray  # (3, 2) int: per axis (first, last) voxel index, inclusive


def box_from_mask(mask: np.ndarray) -> Box | None:
    """The tightest box around ``mask`` (3D bool), or None if it is empty."""
    if not mask.any():
        return None
    extents = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        extents.append((present[0], present[-1]))
    return np.array(extents, dtype=np.int64)


def largest_run(positive: np.ndarray) -> tuple[int, int] | None:
    """(first, last) index of the longest run of True in a 1D array (the first such run on ties), or None."""
    best, start = None, None
    for index, value in enumerate(np.append(positive, False)):
        if value and start is None:
            start = index
        elif not value and start is not None:
            if best is None or index - 1 - start > best[1] - best[0]:
                best = (start, index - 1)
            start = None
    return best


def walls_mm(box: Box, spacing: Sequence[float]) -> np.ndarray:
    """(3, 2) positions in mm of the lower and upper wall along each axis."""
    step = np.asarray(spacing, dtype=np.float64)[:, None]
    return np.stack([box[:, 0], box[:, 1] + 1], axis=1) * step


def centroid_distance_mm(predicted: Box, reference: Box, spacing: Sequence[float]) -> float:
    """Euclidean distance in mm between the two box centres."""
    return float(np.linalg.norm(walls_mm(predicted, spacing).mean(axis=1) - walls_mm(reference, spacing).mean(axis=1)))


def wall_distance_mm(predicted: Box, reference: Box, spacing: Sequence[float]) -> float:
    """Mean absolute distance in mm between the six corresponding walls."""
    return float(np.abs(walls_mm(predicted, spacing) - walls_mm(reference, spacing)).mean())
