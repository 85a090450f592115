"""Box metrics of organ localisation on hand-computed cases with anisotropic spacing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ssl_medbench.downstream.boxes import (
    box_from_mask,
    centroid_distance_mm,
    largest_run,
    wall_distance_mm,
    walls_mm,
    worst_centroid_distance_mm,
    worst_wall_distance_mm,
)

SPACING = (0.5, 2.0, 3.0)


def test_box_from_mask_is_the_tightest_inclusive_box():
    mask = np.zeros((10, 8, 6), bool)
    mask[2:5, 1, 3] = True
    mask[4, 6, 5] = True
    assert box_from_mask(mask).tolist() == [[2, 4], [1, 6], [3, 5]]
    assert box_from_mask(np.zeros((3, 3, 3), bool)) is None


def test_walls_are_the_outer_faces_of_the_first_and_last_voxels():
    box = np.array([[2, 4], [1, 6], [3, 5]])
    assert walls_mm(box, SPACING).tolist() == [[1.0, 2.5], [2.0, 14.0], [9.0, 18.0]]


def test_centroid_and_wall_distances_by_hand():
    reference = np.array([[2, 4], [1, 6], [3, 5]])
    predicted = np.array([[4, 6], [1, 6], [2, 5]])  # shifted 2 voxels in x, grown by one slice in z
    # centres: x 1.75 -> 2.75 mm; y equal; z 13.5 -> 12.0 mm
    assert centroid_distance_mm(predicted, reference, SPACING) == pytest.approx(math.hypot(1.0, 1.5))
    # walls: x both move 1 mm; y 0; z lower moves 3 mm, upper 0 -> (1 + 1 + 0 + 0 + 3 + 0) / 6
    assert wall_distance_mm(predicted, reference, SPACING) == pytest.approx(5 / 6)
    assert centroid_distance_mm(reference, reference, SPACING) == 0.0 == wall_distance_mm(reference, reference, SPACING)


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 1, 1, 0, 1, 1, 1, 0], (4, 6)),
        ([1, 1, 0, 1, 1], (0, 1)),
        ([0, 0, 0], None),
        ([1, 1, 1], (0, 2)),
        ([0, 0, 1], (2, 2)),
    ],
)
def test_largest_run_of_positive_slices(values, expected):
    assert largest_run(np.array(values, bool)) == expected


def test_the_worst_case_distances_bound_every_box_inside_the_image_and_are_nearly_reached():
    """A missed organ's penalties: no predicted box inside the image is farther, and the farthest boxes come within a
    voxel (a box's walls lie on voxel faces, its smallest extent is one voxel)."""
    shape = (7, 5, 6)
    reference = np.array([[1, 2], [3, 4], [0, 1]])
    axes = [list(itertools.combinations_with_replacement(range(n), 2)) for n in shape]
    boxes = [np.array(extents) for extents in itertools.product(*axes)]
    centroids = [centroid_distance_mm(box, reference, SPACING) for box in boxes]
    walls = [wall_distance_mm(box, reference, SPACING) for box in boxes]
    worst_centroid = worst_centroid_distance_mm(reference, shape, SPACING)
    worst_wall = worst_wall_distance_mm(reference, shape, SPACING)
    assert max(centroids) <= worst_centroid and max(walls) <= worst_wall
    assert worst_centroid - max(centroids) <= np.linalg.norm(np.asarray(SPACING) / 2)
    assert worst_wall - max(walls) <= max(SPACING)
