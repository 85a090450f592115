"""The critical-difference analysis (Friedman + Nemenyi over (task, fraction) blocks) on small hand-made tables,
checked against scipy (rankdata, friedmanchisquare, the normal distribution), Demšar's Table 5a and hand-worked ranks;
and its diagram written as a PNG."""

from __future__ import annotations

from itertools import product
from math import sqrt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats

from ssl_medbench.reports.critical_difference import (
    CriticalDifference,
    NotEnoughBlocks,
    _cliques,
    critical_difference,
)
from ssl_medbench.reports.critical_difference_diagram import plot_critical_difference

INITS = ["A", "B", "C", "D"]


def _long(table: dict[tuple[str, float], list[float | None]], inits: list[str] = INITS) -> pd.DataFrame:
    """Rows task, fraction, initialisation, value from {(task, fraction): one value per initialisation (None: absent)}."""
    rows = [
        {"task": task, "budget": fraction, "initialisation": init, "value": value}
        for (task, fraction), values in table.items()
        for init, value in zip(inits, values)
        if value is not None
    ]
    return pd.DataFrame(rows)


# Six blocks of four initialisations, higher is better; blocks 2, 4 and 5 hold ties (one of three values).
TABLE = {
    ("cls", 1.0): [0.90, 0.80, 0.70, 0.60],
    ("cls", 0.5): [0.85, 0.85, 0.70, 0.65],
    ("cls", 0.25): [0.70, 0.75, 0.60, 0.50],
    ("seg", 1.0): [0.80, 0.80, 0.80, 0.70],
    ("seg", 0.5): [0.78, 0.60, 0.60, 0.65],
    ("seg", 0.25): [0.60, 0.62, 0.55, 0.58],
}
HIGHER = {"cls": "higher", "seg": "higher"}


def _dominated(n_blocks: int) -> pd.DataFrame:
    """A best in every block; B, C, D take ranks 2-4 in turn, so their average ranks are all 3 when 3 divides N."""
    cycle = [[3.0, 2.0, 1.0], [2.0, 1.0, 3.0], [1.0, 3.0, 2.0]]
    return _long({("cls", float(block)): [10.0, *cycle[block % 3]] for block in range(n_blocks)})


def test_average_ranks_and_friedman_statistic_agree_with_scipy() -> None:
    result = critical_difference(_long(TABLE), HIGHER)
    values = np.array(list(TABLE.values()))
    expected_ranks = np.array([stats.rankdata(-row) for row in values]).mean(axis=0)
    friedman = stats.friedmanchisquare(*values.T)
    assert result.average_ranks.to_dict() == pytest.approx(dict(zip(INITS, expected_ranks)))
    assert list(result.average_ranks.index) == ["A", "B", "C", "D"]
    assert result.average_ranks.is_monotonic_increasing
    assert result.statistic == pytest.approx(friedman.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(friedman.pvalue, rel=1e-12)
    assert (result.n_blocks, result.dropped_blocks) == (6, 0)


def test_ties_share_the_average_of_their_ranks() -> None:
    ranks = critical_difference(_long(TABLE), HIGHER).block_ranks
    assert ranks.loc[("seg", 1.0)].to_dict() == {"A": 2.0, "B": 2.0, "C": 2.0, "D": 4.0}
    assert ranks.loc[("seg", 0.5)].to_dict() == {"A": 1.0, "B": 3.5, "C": 3.5, "D": 2.0}


def test_blocks_that_tie_every_initialisation_give_no_evidence() -> None:
    result = critical_difference(_long({("cls", f): [0.5, 0.5, 0.5, 0.5] for f in (1.0, 0.5, 0.25)}), HIGHER)
    assert (result.statistic, result.p_value) == (0.0, 1.0)
    assert result.average_ranks.to_dict() == {"A": 2.5, "B": 2.5, "C": 2.5, "D": 2.5}
    assert result.cliques == (("A", "B", "C", "D"),)


def test_critical_difference_for_four_initialisations_matches_demsar_table_5a() -> None:
    result = critical_difference(_dominated(12), {"cls": "higher"})
    assert result.n_blocks == 12
    assert result.critical_difference == pytest.approx(2.569 * sqrt(4 * 5 / (6 * 12)), abs=5e-4)


def test_nemenyi_for_two_initialisations_is_the_normal_test_of_the_rank_difference() -> None:
    """For k = 2 the studentized range of two standard normals is sqrt(2) |Z|: q_0.05 = 1.960, p = 2 P(Z > d / se)."""
    values = _long({("cls", float(block)): [1.0, 0.0] if block < 7 else [0.0, 1.0] for block in range(10)}, ["A", "B"])
    result = critical_difference(values, {"cls": "higher"})
    se = sqrt(2 * 3 / (6 * 10))
    assert result.average_ranks.to_dict() == pytest.approx({"A": 1.3, "B": 1.7})
    assert result.critical_difference == pytest.approx(1.960 * se, abs=5e-4)
    assert result.pairwise_p.loc["A", "B"] == pytest.approx(2 * stats.norm.sf(0.4 / se), rel=1e-6)
    assert result.statistic == pytest.approx(
        (7 - 3) ** 2 / 10, rel=1e-12
    )  # the sign test's chi-square: 7 wins, 3 losses


def test_a_lower_is_better_task_ranks_its_smallest_value_first() -> None:
    table = {("hd", 1.0): [3.0, 9.0, 5.0, 7.0], ("hd", 0.5): [4.0, 8.0, 6.0, 2.0]}
    lower = critical_difference(_long(table), {"hd": "lower"})
    higher = critical_difference(_long(table), {"hd": "higher"})
    assert lower.block_ranks.loc[("hd", 1.0)].to_dict() == {"A": 1.0, "B": 4.0, "C": 2.0, "D": 3.0}
    assert lower.average_ranks.to_dict() == {"A": 1.5, "D": 2.0, "C": 2.5, "B": 4.0}
    assert list(lower.block_ranks.columns) == list(lower.average_ranks.index) == ["A", "D", "C", "B"]
    pd.testing.assert_frame_equal(higher.block_ranks[INITS], 5.0 - lower.block_ranks[INITS])


def test_tasks_of_either_direction_are_ranked_in_one_analysis() -> None:
    table = {("hd", 1.0): [3.0, 9.0, 5.0, 7.0], ("dice", 1.0): [0.9, 0.1, 0.7, 0.3]}
    result = critical_difference(_long(table), {"hd": "lower", "dice": "higher"})
    assert result.average_ranks.to_dict() == {"A": 1.0, "C": 2.0, "D": 3.0, "B": 4.0}


def test_each_block_value_is_the_mean_over_seeds() -> None:
    """Three seeds: A's mean (0.6) is below B's (0.7) although A's median, maximum and first seed are above it.

    A seed without a value is left out of the mean (C's block stays complete)."""
    seeds = [("A", 0.9), ("A", 0.9), ("A", 0.0), ("B", 0.7), ("B", 0.7), ("B", 0.7), ("C", 0.2), ("C", np.nan)]
    rows = pd.DataFrame(
        [(task, 1.0, init, value) for task in ("cls", "seg") for init, value in seeds],
        columns=["task", "budget", "initialisation", "value"],
    )
    result = critical_difference(rows, HIGHER)
    assert result.average_ranks.to_dict() == {"B": 1.0, "A": 2.0, "C": 3.0}


def test_blocks_missing_an_initialisation_are_dropped_and_counted() -> None:
    table = {
        ("cls", 1.0): [0.9, 0.8, 0.7, 0.6],
        ("cls", 0.5): [0.6, 0.7, None, 0.9],  # C never ran here
        ("seg", 1.0): [0.5, 0.9, 0.7, 0.8],
        ("seg", 0.5): [0.1, 0.2, np.nan, 0.3],  # C's runs logged no value
    }
    result = critical_difference(_long(table), HIGHER)
    assert (result.n_blocks, result.dropped_blocks) == (2, 2)
    assert list(result.block_ranks.index) == [("cls", 1.0), ("seg", 1.0)]
    assert result.average_ranks.to_dict() == {"B": 1.5, "A": 2.5, "C": 3.0, "D": 3.0}


def test_not_enough_initialisations_or_complete_blocks_raise_a_catchable_error() -> None:
    with pytest.raises(NotEnoughBlocks, match="got 1 initialisations and 3 complete blocks") as one_init:
        critical_difference(_long({("cls", f): [0.5] for f in (1.0, 0.5, 0.25)}, ["A"]), HIGHER)
    assert one_init.value.n_initialisations == 1
    table = {("cls", 1.0): [0.9, 0.8, 0.7, 0.6], ("cls", 0.5): [0.6, None, 0.7, 0.9]}
    with pytest.raises(NotEnoughBlocks, match=r"1 complete blocks \(1 dropped") as one_block:
        critical_difference(_long(table), HIGHER)
    assert (one_block.value.n_blocks, one_block.value.dropped_blocks) == (1, 1)
    with pytest.raises(NotEnoughBlocks):
        critical_difference(pd.DataFrame(columns=["task", "budget", "initialisation", "value"]), HIGHER)


def test_a_task_without_a_valid_direction_is_named() -> None:
    with pytest.raises(ValueError, match=r"\['seg'\]"):
        critical_difference(_long(TABLE), {"cls": "higher", "seg": "up"})
    with pytest.raises(ValueError, match="lacks the columns \\['value'\\]"):
        critical_difference(_long(TABLE).drop(columns="value"), HIGHER)


def test_an_initialisation_that_wins_every_block_is_separated_from_the_others() -> None:
    result = critical_difference(_dominated(12), {"cls": "higher"})
    assert result.average_ranks.to_dict() == {"A": 1.0, "B": 3.0, "C": 3.0, "D": 3.0}
    assert result.cliques == (("B", "C", "D"),)
    assert all(result.pairwise_p.loc["A", other] < 0.05 for other in "BCD")
    assert all(result.pairwise_p.loc[i, j] == pytest.approx(1.0) for i, j in product("BCD", repeat=2))
    assert result.p_value < 0.05


def test_with_few_blocks_the_same_ranks_are_not_separated() -> None:
    result = critical_difference(_dominated(3), {"cls": "higher"})
    assert result.critical_difference > 2.0  # the rank gap between A and the others
    assert result.cliques == (("A", "B", "C", "D"),)
    assert result.pairwise_p.loc["A", "B"] > 0.05


def test_pairwise_p_is_below_alpha_exactly_where_ranks_differ_by_the_critical_difference() -> None:
    result = critical_difference(_long(TABLE), HIGHER)
    ranks = result.average_ranks
    for i, j in product(ranks.index, repeat=2):
        significant = abs(ranks[i] - ranks[j]) >= result.critical_difference
        assert (result.pairwise_p.loc[i, j] < result.alpha) == significant


def test_cliques_are_the_maximal_runs_spanning_less_than_the_critical_difference() -> None:
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.6, "d": 3.0, "e": 4.5})
    assert _cliques(ranks, 1.2) == (("a", "b"), ("b", "c"), ("c", "d"))
    assert _cliques(ranks, 0.4) == ()
    assert _cliques(ranks, 4.0) == (("a", "b", "c", "d", "e"),)
    nested = pd.Series({"a": 1.0, "b": 1.2, "c": 1.4, "d": 3.0})
    assert _cliques(nested, 1.0) == (("a", "b", "c"),)  # (b, c) lies inside (a, b, c): not a clique of its own
    assert _cliques(pd.Series({"a": 1.0, "b": 2.0}), 1.0) == ()  # a difference of exactly CD is significant


def test_the_result_cannot_be_changed() -> None:
    result = critical_difference(_long(TABLE), HIGHER)
    assert isinstance(result, CriticalDifference)
    with pytest.raises(AttributeError):
        result.p_value = 0.0  # type: ignore[misc]


def test_the_diagram_is_written_as_a_png(tmp_path: Path) -> None:
    result = critical_difference(_dominated(12), {"cls": "higher"})
    path = tmp_path / "critical_difference.png"
    assert plot_critical_difference(result, path) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(path)
    assert pixels.shape[1] > pixels.shape[0] > 50
    assert (pixels[..., :3] < 0.5).any()  # something is drawn in black on the white canvas
