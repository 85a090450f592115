"""Jigsaw (Noroozi & Favaro 2016): the permutation set and that undoing the labelled permutation restores the grid."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from ssl_medbench.pretext_tasks.jigsaw import Jigsaw, normalise_tiles
from ssl_medbench.pretext_tasks.patch_grid import CELLS
from ssl_medbench.pretext_tasks.permutations import maximal_hamming_permutations, min_hamming_distance


def test_default_permutation_set_is_100_distinct_permutations_with_documented_minimum_distance_6():
    permutations = maximal_hamming_permutations(100)
    assert permutations.shape == (100, 9)
    assert all(sorted(row) == list(range(9)) for row in permutations.tolist())
    assert len({tuple(row) for row in permutations.tolist()}) == 100
    assert min_hamming_distance(permutations) == 6
    assert list(permutations[0]) == list(range(9))


def test_permutation_set_is_deterministic_and_greedy_prefixes_agree():
    maximal_hamming_permutations.cache_clear()
    first = maximal_hamming_permutations(30).copy()
    maximal_hamming_permutations.cache_clear()
    assert np.array_equal(first, maximal_hamming_permutations(30))
    assert np.array_equal(first, maximal_hamming_permutations(100)[:30])


def test_min_hamming_distance_against_a_brute_force_count():
    rows = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8], [1, 0, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1, 0]])
    brute = min(sum(a != b for a, b in zip(x, y)) for x, y in itertools.combinations(rows.tolist(), 2))
    assert min_hamming_distance(rows) == brute == 2


def test_undoing_the_labelled_permutation_restores_the_grid_order():
    """Without jitter the tiles are fixed grid cells: tile i of the input is cell permutation[i]."""
    task = Jigsaw(Jigsaw.Config(gap_fraction=0.0, jitter_fraction=0.0, patch_fraction=1 / 3, normalise_tiles=False))
    images = torch.randn(32, 2, 48, 48, generator=torch.Generator().manual_seed(0))
    inputs, labels = task.make_batch(images, torch.Generator().manual_seed(1))
    assert inputs.shape == (32, 9, 2, 16, 16)
    permutations = torch.as_tensor(task.permutations.copy())[labels]
    restored = inputs[torch.arange(32)[:, None], permutations.argsort(dim=1)]
    assert torch.equal(task.restore(inputs, labels), restored)
    for cell, (row, col) in enumerate(CELLS):
        assert torch.equal(restored[:, cell], images[:, :, 16 * row : 16 * row + 16, 16 * col : 16 * col + 16])
    assert len(set(labels.tolist())) > 10


def test_with_jitter_each_restored_tile_comes_from_its_own_cell():
    task = Jigsaw(Jigsaw.Config(normalise_tiles=False))
    images = torch.randn(8, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    inputs, labels = task.make_batch(images, torch.Generator().manual_seed(3))
    grid = task.grid(64, 64)
    restored = inputs[torch.arange(8)[:, None], torch.as_tensor(task.permutations.copy())[labels].argsort(dim=1)]
    for b in range(8):
        found = []
        for cell in range(9):
            tile = restored[b, cell, 0]
            matches = [
                (r, c)
                for r in range(64 - grid.patch + 1)
                for c in range(64 - grid.patch + 1)
                if torch.equal(images[b, 0, r : r + grid.patch, c : c + grid.patch], tile)
            ]
            assert len(matches) == 1
            found.append(matches[0])
        rows = [r for r, _ in found]
        cols = [c for _, c in found]
        # cells are ordered row-major: row bands increase down, columns increase to the right
        assert rows[0] < rows[3] < rows[6] and cols[0] < cols[1] < cols[2]


def test_tiles_are_normalised_per_tile_and_channel():
    tiles = torch.randn(2, 9, 3, 8, 8) * 5 + 3
    normalised = normalise_tiles(tiles)
    assert torch.allclose(normalised.mean(dim=(-2, -1)), torch.zeros(2, 9, 3), atol=1e-5)
    assert torch.allclose(normalised.std(dim=(-2, -1), unbiased=False), torch.ones(2, 9, 3), atol=1e-3)
    assert torch.equal(normalise_tiles(torch.zeros(1, 9, 1, 4, 4)), torch.zeros(1, 9, 1, 4, 4))


def test_permutation_set_is_written_for_the_run(tmp_path):
    task = Jigsaw(Jigsaw.Config(num_permutations=12))
    task.write_artifacts(tmp_path)
    with (tmp_path / "jigsaw_permutations.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert [int(rows[5][f"position_{i}"]) for i in range(9)] == task.permutations[5].tolist()
    assert [int(row["class"]) for row in rows] == list(range(12))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"num_permutations": 1}, "num_permutations"),
        ({"num_permutations": 1001}, "num_permutations"),
        ({"patch_fraction": 1.5}, "patch_fraction"),
    ],
)
def test_bad_configs_are_rejected(config, message):
    with pytest.raises(ValueError, match=message):
        Jigsaw(Jigsaw.Config(**config))


def test_tiles_that_do_not_fit_are_refused_before_training():
    with pytest.raises(ValueError, match="spans"):
        Jigsaw(Jigsaw.Config(patch_fraction=0.3)).check_image_size(64, 64)


@pytest.mark.parametrize("count", [2, 1000])
def test_permutation_set_sizes_at_the_documented_bounds_are_accepted(count: int):
    assert Jigsaw(Jigsaw.Config(num_permutations=count)).num_classes == count


def test_every_permutation_is_drawn_including_the_identity():
    task = Jigsaw(Jigsaw.Config(num_permutations=4))
    _, labels = task.make_batch(torch.randn(200, 1, 64, 64), torch.Generator().manual_seed(0))
    assert set(labels.tolist()) == {0, 1, 2, 3}


def test_nearly_constant_tiles_stay_bounded_after_normalisation():
    """A tile whose spread is about the epsilon (flat background plus noise) is not blown up to large values."""
    tiles = torch.tensor([-1e-5, 1e-5]).repeat(8).view(1, 1, 1, 4, 4)
    normalised = normalise_tiles(tiles)
    assert torch.isfinite(normalised).all() and normalised.abs().max() <= 1.0


def test_the_batch_and_its_restoration_are_made_on_the_images_device():
    """The meta device stands in for an accelerator: nothing may be built on the CPU and mixed in."""
    meta = torch.device("meta")
    task = Jigsaw(Jigsaw.Config(num_permutations=10))
    inputs, labels = task.make_batch(torch.empty(3, 2, 64, 64, device=meta), torch.Generator())
    assert inputs.device == meta and labels.device == meta and inputs.shape == (3, 9, 2, 16, 16)
    assert task.restore(inputs, labels).device == meta


def _shown_tiles(axis, tile: int) -> list[torch.Tensor]:
    """The nine tiles of a preview mosaic (one NaN pixel between tiles), in grid order."""
    canvas = torch.as_tensor(np.asarray(axis.images[0].get_array(), dtype=np.float32))
    return [canvas[r * (tile + 1) : r * (tile + 1) + tile, c * (tile + 1) : c * (tile + 1) + tile] for r, c in CELLS]


def test_preview_shows_the_input_tiles_and_the_true_and_predicted_restorations():
    """Without gaps or jitter the true restoration is the image itself; the predicted one puts input tile
    ``argsort(predicted permutation)[j]`` at grid cell j; the first channel is shown."""
    task = Jigsaw(
        Jigsaw.Config(
            num_permutations=5, gap_fraction=0.0, jitter_fraction=0.0, patch_fraction=1 / 3, normalise_tiles=False
        )
    )
    images = torch.randn(2, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    inputs, labels = task.make_batch(images, torch.Generator().manual_seed(1))
    predicted = (labels + 1) % 5
    outputs = torch.nn.functional.one_hot(predicted, 5).float()
    axes = task.preview(inputs, labels, outputs).axes
    assert len(axes) == 3 * 2
    for b in range(2):
        shown_input, shown_true, shown_predicted = (_shown_tiles(axes[row * 2 + b], 4) for row in range(3))
        back = np.argsort(task.permutations[int(predicted[b])])
        for cell, (r, c) in enumerate(CELLS):
            assert torch.equal(shown_input[cell], inputs[b, cell, 0])
            assert torch.equal(shown_true[cell], images[b, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])
            assert torch.equal(shown_predicted[cell], inputs[b, back[cell], 0])
