"""Box metrics of organ localisation on hand-computed cases with anisotropic spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssl_medbench.downstream.boxes import box_from_mask, centroid_distance_mm, largest_run, wall_distance_mm, walls_mm

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
