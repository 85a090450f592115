"""hd95 against medpy on BraTS-size masks (240 x 240 x 155): identical values, at least 8x faster (medians, same run).

Run ``pytest tests/benchmarks/test_hd95_speed.py``; each case's ratio is in the benchmark's extra_info.
"""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric.binary import hd95 as medpy_hd95

from ssl_medbench.downstream.metrics import hd95
from tests.benchmarks.ratios import paired_medians

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)
MIN_SPEEDUP = 8.0


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    return sum((axis - c) ** 2 for axis, c in zip(grid, centre)) <= radius**2


CASES = {
    "compact_tumour": lambda: (_ball((120, 110, 70), 28), _ball((123, 112, 72), 30)),
    "tumour_plus_false_positive_island": lambda: (
        _ball((120, 110, 70), 28) | _ball((40, 200, 30), 5),
        _ball((123, 112, 72), 30),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hd95_matches_medpy_and_is_at_least_8x_faster(benchmark, case):
    pred, ref = CASES[case]()
    benchmark.group = f"hd95 {case}"
    assert hd95(pred, ref, SPACING) == pytest.approx(medpy_hd95(pred, ref, voxelspacing=SPACING), abs=1e-9)
    ours, medpy = paired_medians(
        benchmark, lambda: hd95(pred, ref, SPACING), lambda: medpy_hd95(pred, ref, voxelspacing=SPACING), rounds=3
    )
    assert medpy / ours >= MIN_SPEEDUP, (
        f"hd95 {case}: {medpy / ours:.1f}x faster than medpy (median {ours:.3f} s vs {medpy:.3f} s)"
    )
