"""The report's statistics called directly on small hand-made tables: the comparison against Random (pairing, seeds,
fractions without a baseline, order of rows, columns), the Wilcoxon p-value (scipy; 1 when nothing differs) and the
rank summary (directions, ties, missing means), each checked against values worked out by hand or by scipy."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl_medbench.reports.stats import BOOTSTRAP_SAMPLES, bootstrap_ci, compare_to_baseline, rank_summary, wilcoxon_p

COLUMNS = [
    "fraction",
    "initialisation",
    "metric",
    "n_subjects",
    "n_seeds",
    "baseline_seeds",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_holm",
]
SUBJECTS = ["s0", "s1", "s2", "s3", "s4", "s5"]


def _scores(cells: dict[tuple[float, str, int], dict[str, list[float]]]) -> pd.DataFrame:
    """One row per (fraction, initialisation, seed, subject) from per-subject metric lists (None: not scored)."""
    rows = []
    for (fraction, label, seed), metrics in cells.items():
        for i, subject in enumerate(SUBJECTS):
            values = {metric: values[i] for metric, values in metrics.items()}
            if all(v is None for v in values.values()):
                continue
            rows.append(
                {"fraction": fraction, "initialisation": label, "seed": seed, "subject_id": subject}
                | {m: np.nan if v is None else v for m, v in values.items()}
            )
    return pd.DataFrame(rows)


#: 1.0 ran no RD (nothing to compare with), 0.5 ran RD (2 seeds), CR (3 seeds) and JS (1 seed; s5 not scored, and
#: its hd of s4 missing), 0.25 ran RD and CR only.
CELLS = {
    (1.0, "CR", 0): {"dice": [0.9, 0.8, 0.85, 0.7, 0.75, 0.8], "hd": [3.0, 4.0, 5.0, 6.0, 2.0, 3.0]},
    (0.5, "RD", 0): {"dice": [0.6, 0.7, 0.5, 0.6, 0.55, 0.65], "hd": [9.0, 8.0, 10.0, 7.0, 9.0, 8.0]},
    (0.5, "RD", 1): {"dice": [0.7, 0.6, 0.6, 0.5, 0.65, 0.55], "hd": [8.0, 9.0, 9.0, 8.0, 7.0, 10.0]},
    (0.5, "CR", 0): {"dice": [0.7, 0.8, 0.7, 0.6, 0.7, 0.7], "hd": [6.0, 7.0, 8.0, 5.0, 6.0, 7.0]},
    (0.5, "CR", 1): {"dice": [0.8, 0.7, 0.6, 0.7, 0.8, 0.6], "hd": [7.0, 6.0, 7.0, 6.0, 5.0, 8.0]},
    (0.5, "CR", 2): {"dice": [0.9, 0.6, 0.8, 0.5, 0.6, 0.8], "hd": [5.0, 5.0, 6.0, 7.0, 7.0, 6.0]},
    (0.5, "JS", 0): {"dice": [0.5, 0.6, 0.4, 0.5, 0.5, None], "hd": [11.0, 12.0, 9.0, 10.0, None, None]},
    (0.25, "RD", 0): {"dice": [0.4, 0.5, 0.3, 0.45, 0.35, 0.5], "hd": [14.0, 12.0, 15.0, 13.0, 12.0, 16.0]},
    (0.25, "CR", 0): {"dice": [0.5, 0.55, 0.45, 0.5, 0.4, 0.6], "hd": [12.0, 11.0, 12.0, 10.0, 11.0, 13.0]},
}


def _subject_means(fraction: float, label: str, metric: str) -> np.ndarray:
    """Per-subject mean over the seeds of one cell, computed from CELLS with numpy (NaN where never scored)."""
    seeds = [
        [np.nan if v is None else v for v in metrics[metric]]
        for (f, lab, _), metrics in CELLS.items()
        if (f, lab) == (fraction, label)
    ]
    return pd.DataFrame(seeds, dtype=float).mean().to_numpy()  # NaN skipped; all-NaN stays NaN


def test_compare_to_baseline_pairs_subjects_per_fraction_against_numpy_and_scipy() -> None:
    """Rows run over the fractions from largest to smallest, skipping one without RD, then over the labels run at
    that fraction; each row pairs the subjects both cells scored (seeds averaged first), and its difference, bootstrap
    interval, Wilcoxon p and Holm-adjusted p match numpy and scipy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's Wilcoxon on few subjects
        table = compare_to_baseline(_scores(CELLS), ["dice", "hd"])
    assert list(table.columns) == COLUMNS
    expected_keys = [
        (0.5, "CR", "dice"),
        (0.5, "CR", "hd"),
        (0.5, "JS", "dice"),
        (0.5, "JS", "hd"),
        (0.25, "CR", "dice"),
        (0.25, "CR", "hd"),
    ]
    assert list(zip(table["fraction"], table["initialisation"], table["metric"])) == expected_keys
    assert table["n_seeds"].tolist() == [3, 3, 1, 1, 1, 1]
    assert table["baseline_seeds"].tolist() == [2, 2, 2, 2, 1, 1]
    for (fraction, label, metric), (_, row) in zip(expected_keys, table.iterrows()):
        differences = _subject_means(fraction, label, metric) - _subject_means(fraction, "RD", metric)
        differences = differences[~np.isnan(differences)]
        assert row["n_subjects"] == len(differences) == {"JS": {"dice": 5, "hd": 4}}.get(label, {}).get(metric, 6)
        assert row["mean_difference"] == pytest.approx(differences.mean())
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_ci(differences, BOOTSTRAP_SAMPLES, 0))
        assert row["ci_low"] <= row["mean_difference"] <= row["ci_high"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            assert row["p_value"] == pytest.approx(stats.wilcoxon(differences).pvalue)
    p = table["p_value"].to_numpy()
    order = np.argsort(p, kind="stable")
    by_hand = np.maximum.accumulate(np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order]))
    assert table["p_holm"].to_numpy()[order] == pytest.approx(by_hand)


def test_compare_to_baseline_without_any_random_cell_is_an_empty_table_with_every_column() -> None:
    """No RD at any fraction: nothing to compare, yet the table keeps its columns (the report writes its CSV)."""
    scores = _scores({key: value for key, value in CELLS.items() if key[1] != "RD"})
    table = compare_to_baseline(scores, ["dice", "hd"])
    assert table.empty and list(table.columns) == COLUMNS


def test_compare_to_baseline_without_shared_subjects_reports_zero_pairs_and_no_statistics() -> None:
    """A cell scored on subjects RD never scored has no pairs: its row says so, with no difference, interval or p."""
    scores = _scores({key: value for key, value in CELLS.items() if key[0] == 0.25})
    scores.loc[scores["initialisation"] == "CR", "subject_id"] += "_other"
    table = compare_to_baseline(scores, ["dice"])
    assert list(table.columns) == COLUMNS
    row = table.iloc[0]
    assert len(table) == 1 and (row["fraction"], row["initialisation"], row["n_subjects"]) == (0.25, "CR", 0)
    assert table[["mean_difference", "ci_low", "ci_high", "p_value", "p_holm"]].isna().all(axis=None)


def test_wilcoxon_p_matches_scipy_and_is_one_when_nothing_differs() -> None:
    """Differences that are all zero give p = 1 without calling scipy (which fails on one subject and returns NaN on
    many); otherwise scipy's two-sided p, also for differences that are all one."""
    for n in (1, 60):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert wilcoxon_p(np.zeros(n)) == 1.0
    assert wilcoxon_p(np.ones(6)) == pytest.approx(stats.wilcoxon(np.ones(6)).pvalue) == pytest.approx(1 / 32)
    differences = np.array([0.4, -0.1, 0.3, 0.25, 0.5, 0.2, -0.05])
    assert (
        wilcoxon_p(differences) == pytest.approx(stats.wilcoxon(differences).pvalue) == pytest.approx(5 / 64)
    )  # T = 1 + 2: 5 of 128 sign patterns, twice


def _means() -> pd.DataFrame:
    """Means as the report's ``cell_means`` gives them, ``std`` NaN for single-seed cells, one mean missing."""
    rows = [
        ("seg", 1.0, "RD", "dice", 0.80, 0.01),
        ("seg", 1.0, "CR", "dice", 0.85, 0.02),
        ("seg", 1.0, "JS", "dice", 0.75, 0.01),
        ("seg", 1.0, "RD", "hd", 10.0, 1.0),
        ("seg", 1.0, "CR", "hd", 8.0, 0.5),
        ("seg", 1.0, "JS", "hd", 12.0, 2.0),
        ("seg", 0.5, "RD", "dice", 0.70, np.nan),
        ("seg", 0.5, "CR", "dice", 0.70, np.nan),
        ("seg", 0.5, "JS", "dice", 0.72, np.nan),
        ("seg", 0.5, "RD", "hd", 15.0, np.nan),
        ("seg", 0.5, "CR", "hd", np.nan, np.nan),
        ("seg", 0.5, "JS", "hd", 14.0, np.nan),
        ("cls", 1.0, "RD", "accuracy", 0.90, np.nan),
        ("cls", 1.0, "CR", "accuracy", 0.80, np.nan),
        ("cls", 1.0, "JS", "accuracy", 0.95, np.nan),
    ]
    return pd.DataFrame(rows, columns=["task", "fraction", "initialisation", "metric", "mean", "std"])


def test_rank_summary_ranks_by_each_metrics_direction_averages_ties_and_sorts_by_mean_rank() -> None:
    """Ranks (1 = best) per (task, fraction, metric): higher is better unless the task says lower, ties share the
    average rank, a missing mean is left out (a missing std is not); averaged per task, then over tasks."""
    # seg: dice@1 CR 1 RD 2 JS 3; hd@1 (lower) CR 1 RD 2 JS 3; dice@0.5 JS 1, RD = CR = 2.5; hd@0.5 JS 1 RD 2.
    # cls: JS 1 RD 2 CR 3.
    seg = {"RD": (2 + 2 + 2.5 + 2) / 4, "CR": (1 + 1 + 2.5) / 3, "JS": (3 + 3 + 1 + 1) / 4}
    cls = {"RD": 2.0, "CR": 3.0, "JS": 1.0}
    table = rank_summary(_means(), {"seg": {"hd": "lower"}, "cls": {"accuracy": "higher"}})
    assert list(table.index) == ["JS", "RD", "CR"]
    assert sorted(table.columns) == ["cls", "mean rank", "seg"]
    for label in ("RD", "CR", "JS"):
        assert table.loc[label, "seg"] == pytest.approx(seg[label])
        assert table.loc[label, "cls"] == pytest.approx(cls[label])
        assert table.loc[label, "mean rank"] == pytest.approx((seg[label] + cls[label]) / 2)


def test_rank_summary_agrees_with_scipy_rankdata_and_is_empty_without_means() -> None:
    """One task, one metric per direction: the ranks are scipy's average ranks of the means (negated where higher is
    better); with every mean missing there is nothing to rank."""
    means = _means()
    one = means[(means["task"] == "seg") & (means["fraction"] == 1.0)]
    table = rank_summary(one, {"seg": {"hd": "lower"}})
    dice = one[one["metric"] == "dice"].set_index("initialisation")["mean"]
    hd = one[one["metric"] == "hd"].set_index("initialisation")["mean"]
    expected = (pd.Series(stats.rankdata(-dice), dice.index) + pd.Series(stats.rankdata(hd), hd.index)) / 2
    assert table["seg"].to_dict() == pytest.approx(expected.to_dict())
    assert rank_summary(means.assign(mean=np.nan), {"seg": {}, "cls": {}}).empty
