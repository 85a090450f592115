"""The HD95 conventions and the normalised surface Dice against their reference libraries (medpy, MONAI, DeepMind's
surface-distance) on random 2D/3D cases, against values computed by hand, and the empty-mask policies."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import surface_distance
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_hausdorff_distance
from scipy import ndimage
from surface_distance import lookup_tables

from ssl_medbench.downstream.lattice_distances import MAX_OFFSETS, within_tolerance
from ssl_medbench.downstream.metrics import (
    BRATS_2023,
    HD95_CONVENTIONS,
    IMAGE_DIAGONAL,
    EmptyMaskPolicy,
    _area_weighted_percentile,
    dice,
    hd95,
    image_diagonal_mm,
    normalized_surface_dice,
)
from ssl_medbench.downstream.surface_elements import _bit, _element_vectors, neighbour_code_measures, surface_elements

CASES = 60
#: With the isotropic 1 mm and 0.4 mm cases, 1 and 2 mm are exact lattice distances: ties at the tolerance; at 0.4 mm
#: a 2 mm tolerance spans more than MAX_OFFSETS offsets, so the KD-tree answers.
TOLERANCES_MM = (0.5, 1.0, 2.0, 2.5)


def _blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=rng.uniform(1.0, 2.5))
    return field > np.quantile(field, rng.uniform(0.6, 0.95))


def _border_blob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A blob that also fills part of the first slice along a random axis: the surface touches the array's border."""
    mask = _blob(rng, shape)
    border = [slice(None)] * len(shape)
    border[int(rng.integers(len(shape)))] = 0
    mask[tuple(border)] |= rng.random(mask[tuple(border)].shape) > 0.5
    return mask


def _single_voxel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(int(rng.integers(n)) for n in shape)] = True
    return mask


def _thin(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A one-voxel-thick line (2D) or sheet (3D) across part of the array."""
    mask = np.zeros(shape, bool)
    index = [slice(int(rng.integers(0, n // 2)), int(rng.integers(n // 2 + 1, n + 1))) for n in shape]
    index[int(rng.integers(len(shape)))] = int(rng.integers(0, min(shape)))
    mask[tuple(index)] = True
    return mask


MAKERS = (_blob, _border_blob, _single_voxel, _thin)


def _case(index: int) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Case ``index``: 2D every third case, else 3D; the masks' kinds cycle through every pair of MAKERS; anisotropic
    spacing, except isotropic 1 mm (BraTS) and 0.4 mm (not a binary fraction) in every fifth case each, where distances
    tie with the tolerances. Never an empty mask (those are scored by a policy, tested by hand below)."""
    rng = np.random.default_rng(500 + index)
    shape = tuple(int(n) for n in rng.integers(6, 24, size=2 if index % 3 == 0 else 3))
    make_pred, make_ref = list(itertools.product(MAKERS, repeat=2))[index % len(MAKERS) ** 2]
    pred, ref = make_pred(rng, shape), make_ref(rng, shape)
    pred = pred if pred.any() else _single_voxel(rng, shape)
    ref = ref if ref.any() else _single_voxel(rng, shape)
    isotropic = {3: 1.0, 4: 0.4}.get(index % 5)
    spacing = rng.uniform(0.3, 3.0, size=len(shape)) if isotropic is None else [isotropic] * len(shape)
    return pred, ref, tuple(float(s) for s in spacing)


def _surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict:
    with warnings.catch_warnings():  # surface-distance imports from scipy.ndimage.filters (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        return surface_distance.compute_surface_distances(ref, pred, spacing)


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
@pytest.mark.parametrize("index", range(CASES))
def test_each_convention_equals_its_reference_library(index: int):
    pred, ref, spacing = _case(index)
    assert abs(hd95(pred, ref, spacing, "medpy") - medpy_binary.hd95(pred, ref, voxelspacing=spacing)) <= 1e-6
    as_tensor = [torch.from_numpy(mask[None, None].astype(np.float32)) for mask in (pred, ref)]
    monai = compute_hausdorff_distance(*as_tensor, include_background=True, percentile=95, spacing=spacing).item()
    assert hd95(pred, ref, spacing, "max_directed") == pytest.approx(monai, rel=1e-6, abs=1e-6)
    reference = _surface_distances(pred, ref, spacing)
    robust = surface_distance.compute_robust_hausdorff(reference, 95)
    assert abs(hd95(pred, ref, spacing, "surface_elements") - robust) <= 1e-6
    for tolerance in TOLERANCES_MM:
        expected = surface_distance.compute_surface_dice_at_tolerance(reference, tolerance)
        assert abs(normalized_surface_dice(pred, ref, spacing, tolerance) - expected) <= 1e-9


def test_the_cases_cover_every_kind_in_2d_and_3d():
    """The random cases pair every kind (blob, border-touching blob, single voxel, thin structure) with every other,
    in 2D and in 3D."""
    dimensions = {len(_case(i)[2]) for i in range(CASES)}
    pairs = {i % len(MAKERS) ** 2 for i in range(CASES)}
    assert dimensions == {2, 3} and len(pairs) == len(MAKERS) ** 2


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_derived_area_table_equals_surface_distance_for_any_spacing(ndim: int):
    """Our marching-cubes (squares) derivation against the package's stored table, code by code, at random spacings:
    their codes weight the voxel at offset (i, j, k) by the kernel's entry there, ours by _bit."""
    kernel = lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL if ndim == 3 else lookup_tables.ENCODE_NEIGHBOURHOOD_2D_KERNEL
    stored = (
        lookup_tables.create_table_neighbour_code_to_surface_area
        if ndim == 3
        else lookup_tables.create_table_neighbour_code_to_contour_length
    )
    _element_vectors.cache_clear()  # derive the table afresh in this test, not from an earlier test's cache
    corners = list(itertools.product((0, 1), repeat=ndim))
    rng = np.random.default_rng(ndim)
    for spacing in [(1.0,) * ndim] + [tuple(rng.uniform(0.2, 4.0, ndim)) for _ in range(5)]:
        ours, theirs = neighbour_code_measures(spacing), stored(spacing)
        for code in range(1 << len(corners)):
            their_code = sum(int(kernel[c]) for c in corners if code & _bit(c))
            assert ours[code] == pytest.approx(theirs[their_code], abs=1e-12)


def test_surface_measures_by_hand():
    """A single voxel's surface is an octahedron of 8 corner triangles, each sqrt(3)/8 at unit spacing; a 2D square of
    n x n pixels has straight sides of (n - 1) pixels and four corner cuts of half a pixel diagonal."""
    voxel = np.ones((1, 1, 1), bool)
    assert surface_elements(voxel, (1.0, 1.0, 1.0)).areas.sum() == pytest.approx(math.sqrt(3))
    assert len(surface_elements(voxel, (1.0, 1.0, 1.0)).areas) == 8
    square, (sx, sy) = np.ones((5, 5), bool), (0.5, 2.0)
    expected = 2 * 4 * (sx + sy) + 4 * 0.5 * math.hypot(sx, sy)
    assert surface_elements(square, (sx, sy)).areas.sum() == pytest.approx(expected)


def test_two_voxels_apart_by_hand():
    """Two single voxels 3 voxels apart along axis 0 at 2 mm: centres 6 mm apart (medpy, MONAI); half of each
    octahedron's area (its near corners) lies 4 mm from the other's corners, half 6 mm, so the area-weighted 95th
    percentile is 6 mm and the NSD is 0 below 4 mm, 1/2 from 4 mm and 1 from 6 mm."""
    pred, ref = np.zeros((8, 3, 3), bool), np.zeros((8, 3, 3), bool)
    pred[1, 1, 1] = ref[4, 1, 1] = True
    spacing = (2.0, 0.7, 1.3)
    for convention in HD95_CONVENTIONS:
        assert hd95(pred, ref, spacing, convention) == pytest.approx(6.0)
    assert normalized_surface_dice(pred, ref, spacing, 3.9) == 0.0
    assert normalized_surface_dice(pred, ref, spacing, 4.0) == pytest.approx(0.5)
    assert normalized_surface_dice(pred, ref, spacing, 5.9) == pytest.approx(0.5)
    assert normalized_surface_dice(pred, ref, spacing, 6.0) == pytest.approx(1.0)


def test_the_three_conventions_disagree_as_defined_by_hand():
    """Reference: one pixel; prediction: that pixel and another 10 pixels away (1 mm). Voxel surfaces: pred -> ref
    {0, 10}, ref -> pred {0}. Pooled (medpy): P95 of {0, 0, 10} = 0.9 * 10; max directed (MONAI): P95 of {0, 10} =
    9.5. Surface elements (4 equal corners per pixel): half of pred's area at 0, a quarter at 9 (near corners), a
    quarter at 10, so 95 % of the area is reached at 10."""
    ref, pred = np.zeros((1, 12), bool), np.zeros((1, 12), bool)
    ref[0, 0] = pred[0, 0] = pred[0, 10] = True
    assert hd95(pred, ref, None, "medpy") == pytest.approx(9.0)
    assert hd95(pred, ref, None, "max_directed") == pytest.approx(9.5)
    assert hd95(pred, ref, None, "surface_elements") == pytest.approx(10.0)


@pytest.mark.parametrize("convention", sorted(HD95_CONVENTIONS))
def test_empty_masks_under_both_policies_by_hand(convention: str):
    empty = np.zeros((5, 6, 4), bool)
    lesion = empty.copy()
    lesion[2, 3, 1] = True
    spacing = (2.0, 0.5, 3.0)
    diagonal = math.sqrt((4 * 2.0) ** 2 + (5 * 0.5) ** 2 + (3 * 3.0) ** 2)
    assert image_diagonal_mm(empty.shape, spacing) == pytest.approx(diagonal)
    assert hd95(empty, empty, spacing, convention, IMAGE_DIAGONAL) == 0.0
    assert hd95(empty, lesion, spacing, convention, IMAGE_DIAGONAL) == pytest.approx(diagonal)
    assert hd95(lesion, empty, spacing, convention, IMAGE_DIAGONAL) == pytest.approx(diagonal)
    assert hd95(empty, empty, spacing, convention, BRATS_2023) == 0.0
    assert hd95(empty, lesion, spacing, convention, BRATS_2023) == 374.0
    assert hd95(lesion, empty, spacing, convention, BRATS_2023) == 374.0


def test_empty_masks_of_the_overlap_metrics_by_hand():
    empty = np.zeros((5, 6), bool)
    lesion = empty.copy()
    lesion[2, 3] = True
    for policy in (IMAGE_DIAGONAL, BRATS_2023):
        assert normalized_surface_dice(empty, empty, (1.0, 1.0), 1.0, policy) == 1.0
        assert normalized_surface_dice(empty, lesion, (1.0, 1.0), 1.0, policy) == 0.0
        assert normalized_surface_dice(lesion, empty, (1.0, 1.0), 1.0, policy) == 0.0
    assert dice(empty, empty) == 1.0 and dice(empty, lesion) == 0.0
    lenient = EmptyMaskPolicy("lenient", one_empty_distance_mm=10.0, both_empty_overlap=0.5, one_empty_overlap=0.25)
    assert dice(empty, empty, lenient) == 0.5 and dice(empty, lesion, lenient) == 0.0
    assert normalized_surface_dice(empty, lesion, (1.0, 1.0), 1.0, lenient) == 0.25
    assert hd95(empty, lesion, (1.0, 1.0), "medpy", lenient) == 10.0
    assert "one empty -> Dice and NSD 0, HD95 374 mm" in BRATS_2023.describe()
    assert "HD95 the image diagonal" in IMAGE_DIAGONAL.describe()


def test_a_distance_equal_to_the_tolerance_is_within_it_on_both_search_paths():
    """At 0.4 mm (not a binary fraction), a tolerance equal to a lattice distance counts that distance as within, as
    surface-distance does. Two voxels 5 voxels apart: every corner lies 1.6 or 2 mm from the other's, so the NSD at
    2 mm is 1 (a tolerance spanning more than MAX_OFFSETS offsets: the KD-tree answers). Two adjacent voxels share a
    face; their other corners lie 0.4 mm away: NSD 1 at 0.4 mm (the offset search answers)."""
    spacing = (0.4, 0.4, 0.4)
    pred, ref = np.zeros((6, 1, 1), bool), np.zeros((6, 1, 1), bool)
    pred[0], ref[5] = True, True
    assert (2 * 5 + 1) ** 3 > MAX_OFFSETS
    assert normalized_surface_dice(pred, ref, spacing, 2.0) == 1.0
    assert normalized_surface_dice(pred, ref, spacing, 1.9) == pytest.approx(0.5)
    assert hd95(pred, ref, spacing, "surface_elements") == 2.0
    adjacent = np.zeros((6, 1, 1), bool)
    adjacent[1] = True
    assert normalized_surface_dice(pred, adjacent, spacing, 0.4) == 1.0
    assert normalized_surface_dice(pred, adjacent, spacing, 0.39) == pytest.approx(0.5)
    # at 0 mm only the shared face's four corners count: half of each voxel's eight equal corners
    assert normalized_surface_dice(pred, adjacent, spacing, 0.0) == pytest.approx(0.5)
    assert normalized_surface_dice(pred, pred, spacing, 0.0) == 1.0


def test_the_offset_search_agrees_with_the_kd_tree_beyond_its_limit():
    """Above MAX_OFFSETS lattice offsets the tolerance check searches the KD-tree: both give the same answer."""
    rng = np.random.default_rng(3)
    points, targets = rng.integers(0, 30, (200, 3)), rng.integers(0, 30, (50, 3))
    spacing = np.array([0.3, 0.4, 0.5])
    for tolerance in (0.45, 1.0, 2.2):
        distances = np.min(np.linalg.norm((points[:, None] - targets[None]) * spacing, axis=2), axis=1)
        assert np.array_equal(within_tolerance(points, targets, spacing, tolerance), distances <= tolerance)
    assert np.prod(2 * np.floor(2.2 / spacing) + 1) > MAX_OFFSETS


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: hd95(m, m, None, "hausdorff"), "hd95 convention 'hausdorff': expected one of medpy, max_directed"),
        (lambda m: normalized_surface_dice(m, m, None, -1.0), "NSD tolerance -1.0 mm: expected a distance of 0 mm"),
        (lambda m: normalized_surface_dice(m, m, None, math.nan), "NSD tolerance nan mm"),
        (lambda m: hd95(m, m, (1.0, 2.0)), "spacing \\[1.0, 2.0\\] does not match a 3D mask"),
        (
            lambda m: hd95(m, m, (1.0, 0.0, 1.0), "surface_elements"),
            "spacing \\[1.0, 0.0, 1.0\\]: every voxel size must be between 1e-06 and 1e\\+06 mm",
        ),
        (lambda m: normalized_surface_dice(m, m[:2], None, 1.0), "prediction shape"),
        (lambda m: normalized_surface_dice(m, m, None, True), "NSD tolerance True mm"),
        (lambda m: normalized_surface_dice(m, m, None, "1"), "NSD tolerance '1' mm"),
        (lambda m: hd95(m, m, 2.0), "spacing 2.0 does not match a 3D mask"),
        (lambda m: hd95(m, m, (1e-100, 1.0, 1.0)), "every voxel size must be between"),
        (lambda m: hd95(m, m, None, ["medpy"]), "hd95 convention \\['medpy'\\]"),
        (
            lambda m: hd95(m, m * 2, None),
            "reference mask of dtype float64: expected booleans or 0/1 values, found \\[2.0\\]",
        ),
        (
            lambda m: dice(np.where(m, np.nan, 0), m),
            "prediction mask of dtype float64: expected booleans or 0/1 values, found \\[nan",
        ),
        (lambda m: dice(m.astype(str), m), "prediction mask of dtype <U"),
        (lambda m: dice(m[0, 0], m[0, 0]), "masks of shape \\(3,\\): expected 2D or 3D masks"),
        (lambda m: hd95(m[None], m[None]), "masks of shape \\(1, 3, 3, 3\\): expected 2D or 3D masks"),
        (lambda m: dice(m[:0], m[:0]), "masks of shape \\(0, 3, 3\\): expected 2D or 3D masks with at least one voxel"),
        (
            lambda m: hd95(m, 0 * m, None, "medpy", "brats2021"),
            "empty-mask policy 'brats2021': expected an EmptyMaskPolicy",
        ),
        (lambda m: EmptyMaskPolicy("bad", one_empty_distance_mm=-5.0), "distances must be finite and >= 0 mm"),
        (lambda m: EmptyMaskPolicy("bad", None, both_empty_overlap=7), "Dice and NSD values must lie in \\[0, 1\\]"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(call, message: str):
    mask = np.ones((3, 3, 3))
    with pytest.raises(ValueError, match=message):
        call(mask)


def test_the_area_weighted_percentile_takes_the_first_distance_reaching_95_percent_at_a_tie():
    """20 equal areas: the first 19 hold exactly 95 % of the area, so the 95th percentile is the 19th distance (18),
    as surface-distance's searchsorted (side left) gives; side='right' would give the 20th (19)."""
    distances, areas = np.arange(20.0), np.ones(20)
    reference = {
        "distances_gt_to_pred": distances,
        "distances_pred_to_gt": distances,
        "surfel_areas_gt": areas,
        "surfel_areas_pred": areas,
    }
    assert surface_distance.compute_robust_hausdorff(reference, 95) == 18.0
    assert _area_weighted_percentile(distances, areas, 95) == 18.0


def test_surface_elements_hd95_at_an_exact_95_percent_tie_on_masks():
    """Mask-level variant (float-exact tie at this spacing): five isolated pixels against one, 20 equal corner lengths."""
    pred, ref = np.zeros((12, 12), bool), np.zeros((12, 12), bool)
    ref[0, 0] = True
    pred[0, 0] = pred[0, 3] = pred[3, 0] = pred[3, 3] = pred[9, 9] = True
    spacing = (0.8, 1.3)
    expected = surface_distance.compute_robust_hausdorff(_surface_distances(pred, ref, spacing), 95)
    assert hd95(pred, ref, spacing, "surface_elements") == pytest.approx(expected, abs=1e-9)


def test_masks_of_0_1_values_in_any_numeric_dtype_and_policies_by_name_are_accepted():
    pred, ref = np.zeros((6, 6, 3), np.uint8), np.zeros((6, 6, 3), np.float32)
    pred[1:4, 1:4, 1] = 1
    ref[2:5, 2:5, 1] = 1.0
    assert hd95(pred, ref, None, "surface_elements") == hd95(pred > 0, ref > 0, None, "surface_elements")
    assert hd95(pred, 0 * ref, None, "medpy", "brats2023") == 374.0
    assert normalized_surface_dice(0 * pred, ref, None, 1.0, "image_diagonal") == 0.0


def test_a_tolerance_beyond_any_lattice_search_counts_every_element():
    """Tolerances whose offset boxes would overflow an integer go to the KD-tree: everything is within them."""
    pred, ref = np.zeros((6, 6, 6), bool), np.zeros((6, 6, 6), bool)
    pred[0, 0, 0] = ref[5, 5, 5] = True
    for tolerance in (1e6, 1e9, 1e300):
        assert normalized_surface_dice(pred, ref, (1.0, 1.0, 1.0), tolerance) == 1.0
