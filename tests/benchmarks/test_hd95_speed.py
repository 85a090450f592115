"""hd95 against medpy on BraTS-size masks (240 x 240 x 155): identical values, speed as a ratio in the same run.

Run ``pytest tests/benchmarks --benchmark-group-by=param:case`` and compare the medians of
``ours`` and ``medpy`` within each case.
"""

from __future__ import annotations

import numpy as np
import pytest
from medpy.metric.binary import hd95 as medpy_hd95

from downstream.metrics import hd95

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, s) for s in SHAPE)]
    return sum((axis - c) ** 2 for axis, c in zip(grid, centre)) <= radius**2


CASES = {
    "compact_tumour": lambda: (_ball((120, 110, 70), 28), _ball((123, 112, 72), 30)),
    "tumour_plus_false_positive_island": lambda: (_ball((120, 110, 70), 28) | _ball((40, 200, 30), 5), _ball((123, 112, 72), 30)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    return request.param, *CASES[request.param]()


@pytest.mark.parametrize("implementation", ["ours", "medpy"])
def test_hd95_speed(benchmark, case, implementation):
    name, pred, ref = case
    function = hd95 if implementation == "ours" else (lambda p, r, s: medpy_hd95(p, r, voxelspacing=s))
    benchmark.group = f"hd95 {name}"
    value = benchmark.pedantic(function, args=(pred, ref, SPACING), rounds=3, iterations=1, warmup_rounds=0)
    assert value == pytest.approx(medpy_hd95(pred, ref, voxelspacing=SPACING), abs=1e-9)
