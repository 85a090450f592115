"""Bounding boxes of organs and the localisation metrics of de Vos et al. (2017), as used by Chen et al. (2019, Table 4).

A box is given per axis by the first and last voxel index it covers (inclusive). In mm, a box's walls
lie at the outer faces of those voxels: ``first * spacing`` and ``(last + 1) * spacing``.

* centroid distance: Euclidean distance in mm between the centres of the predicted and reference box;
* wall distance: mean over the six walls of the absolute distance in mm between corresponding walls.

A missed organ (no predicted box) is scored, not dropped: it gets the worst value any box inside the image could
get (:func:`worst_centroid_distance_mm`, :func:`worst_wall_distance_mm`), so a method that misses hard subjects never
looks better than one that localises them roughly. Without a reference box (the organ is absent from the subject's
labels) both distances are undefined: NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: (3, 2): per axis (first, last) voxel index, inclusive; int from masks, fractional for a mean box (image_blind).
Box = np.ndarray


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


def image_walls_mm(shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """(3,) extent in mm of an image of ``shape`` voxels: where its upper outer faces lie (its lower ones lie at 0)."""
    return np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)


def worst_centroid_distance_mm(reference: Box, shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The centroid distance of a missed organ: from the reference box's centre to the farthest corner of the image,
    in mm; no box inside the image can have its centre farther away."""
    centre = walls_mm(reference, spacing).mean(axis=1)
    extent = image_walls_mm(shape, spacing)
    return float(np.linalg.norm(np.maximum(centre, extent - centre)))


def worst_wall_distance_mm(reference: Box, shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The wall distance of a missed organ: the mean over the six walls of the farthest each reference wall can be
    from a wall inside the image (the image's face on its far side), in mm; no box inside the image does worse."""
    walls = walls_mm(reference, spacing)
    extent = image_walls_mm(shape, spacing)[:, None]
    return float(np.maximum(walls, extent - walls).mean())
