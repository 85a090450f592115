"""Distances between two sets of points of one voxel lattice (surface voxels or voxel corners), in mm.

Surface metrics compare the points of one surface with those of another. :func:`nearest_distances` gives each
point's exact distance to the nearest point of the other set (a KD-tree: the values a full-volume Euclidean distance
transform gives, at the cost of the surfaces rather than of the volume). :func:`within_tolerance` only says whether
that distance is at most a tolerance, which the normalised surface Dice needs: it looks for a target at each lattice
offset within the tolerance, all points at once, which is much cheaper than a search when the tolerance spans a few
voxels.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

#: Above this many lattice offsets in the box around the tolerance, :func:`within_tolerance` searches the KD-tree instead.
MAX_OFFSETS = 500


def _lengths_mm(steps: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Lengths in mm of integer lattice steps, ``sqrt(sum((step * spacing)^2))``: as a distance transform computes
    them, so that a distance equal to a tolerance compares equal to it."""
    return np.sqrt(np.sum((steps * spacing) ** 2, axis=1))


def nearest_distances(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from each of ``points`` to the nearest of ``targets`` (integer lattice indices, one row per
    point; ``targets`` not empty), the lattice step being ``spacing`` mm along each axis. The KD-tree finds the nearest
    target; the distance is then measured on the integer step to it (:func:`_lengths_mm`)."""
    nearest = cKDTree(targets * spacing, leafsize=32).query(points * spacing, k=1)[1]
    return _lengths_mm(points - targets[nearest], spacing)


def _reach(spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Per axis, a number of steps beyond ``radius_mm`` (one more than the division says, should it round down), as
    floats: a huge radius must not overflow an integer before the caller sees how many offsets it spans."""
    return np.floor(radius_mm / spacing) + 1


def _offsets_within(spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Every integer offset whose length in mm is at most ``radius_mm``."""
    reach = _reach(spacing, radius_mm).astype(int)
    axes = [np.arange(-r, r + 1) for r in reach]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(spacing))
    return offsets[_lengths_mm(offsets, spacing) <= radius_mm]


def within_tolerance(points: np.ndarray, targets: np.ndarray, spacing: np.ndarray, tolerance_mm: float) -> np.ndarray:
    """Whether each of ``points`` lies within ``tolerance_mm`` of some point of ``targets`` (arguments as for
    :func:`nearest_distances`)."""
    reach = _reach(spacing, tolerance_mm)
    if np.prod(np.minimum(2 * reach + 1, MAX_OFFSETS + 1)) > MAX_OFFSETS:
        return nearest_distances(points, targets, spacing) <= tolerance_mm
    offsets = _offsets_within(spacing, tolerance_mm)
    margin = reach.astype(int)
    shape = np.maximum(points.max(axis=0, initial=0), targets.max(axis=0)) + 1 + 2 * margin
    occupied = np.zeros(int(np.prod(shape)), bool)
    occupied[np.ravel_multi_index(tuple((targets + margin).T), shape)] = True
    strides = np.cumprod((*shape[1:], 1)[::-1])[::-1]
    flat_points = (points + margin) @ strides
    found = np.zeros(len(points), bool)
    for flat_offset in offsets @ strides:
        found |= occupied[flat_points + flat_offset]
    return found
