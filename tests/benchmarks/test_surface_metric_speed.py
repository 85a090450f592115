"""Each surface metric against its reference library on BraTS-size masks (240 x 240 x 155, 1 mm): the same value, and
faster by at least the bar of each (medians, same run, alternating rounds).

Run ``pytest tests/benchmarks/test_surface_metric_speed.py``; each ratio is in the benchmark's extra_info. The bars
are what this suite holds itself to on 2 CPU cores; the measured ratios are in README.md ("Speed").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import surface_distance
import torch
from medpy.metric.binary import hd95 as medpy_hd95
from monai.metrics import compute_hausdorff_distance

from ssl_medbench.downstream.metrics import hd95, normalized_surface_dice
from tests.benchmarks.ratios import paired_medians

SHAPE = (240, 240, 155)
SPACING = (1.0, 1.0, 1.0)


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


def _monai_hd95(pred: np.ndarray, ref: np.ndarray) -> float:
    masks = [torch.from_numpy(mask[None, None].astype(np.float32)) for mask in (pred, ref)]
    return compute_hausdorff_distance(*masks, include_background=True, percentile=95, spacing=SPACING).item()


def _surface_distances(pred: np.ndarray, ref: np.ndarray) -> dict:
    with warnings.catch_warnings():  # surface-distance imports from scipy.ndimage.filters (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        return surface_distance.compute_surface_distances(ref, pred, SPACING)


#: name -> (ours, the reference, the bar: the least speed-up accepted, absolute tolerance, relative tolerance).
PAIRS: dict[str, tuple[Callable, Callable, float, float, float]] = {
    "hd95 medpy": (
        lambda p, r: hd95(p, r, SPACING, "medpy"),
        lambda p, r: medpy_hd95(p, r, voxelspacing=SPACING),
        8.0,
        1e-9,
        0.0,
    ),
    "hd95 max_directed vs MONAI": (
        lambda p, r: hd95(p, r, SPACING, "max_directed"),
        _monai_hd95,
        2.5,
        1e-6,
        1e-6,
    ),
    "hd95 surface_elements vs surface-distance": (
        lambda p, r: hd95(p, r, SPACING, "surface_elements"),
        lambda p, r: surface_distance.compute_robust_hausdorff(_surface_distances(p, r), 95),
        1.3,
        1e-9,
        0.0,
    ),
    "NSD at 1 mm vs surface-distance": (
        lambda p, r: normalized_surface_dice(p, r, SPACING, 1.0),
        lambda p, r: surface_distance.compute_surface_dice_at_tolerance(_surface_distances(p, r), 1.0),
        5.0,
        1e-9,
        0.0,
    ),
}


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("pair", list(PAIRS))
def test_surface_metric_matches_its_reference_and_beats_its_bar(benchmark, pair, case):
    pred, ref = CASES[case]()
    ours, reference, bar, absolute, relative = PAIRS[pair]
    benchmark.group = f"{pair} {case}"
    assert ours(pred, ref) == pytest.approx(reference(pred, ref), abs=absolute, rel=relative)
    ours_s, reference_s = paired_medians(benchmark, lambda: ours(pred, ref), lambda: reference(pred, ref), rounds=3)
    assert reference_s / ours_s >= bar, (
        f"{pair} {case}: {reference_s / ours_s:.1f}x faster (median {ours_s:.3f} s vs {reference_s:.3f} s), bar {bar}x"
    )
