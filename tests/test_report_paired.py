"""The paired seeds x subjects estimate: by hand and against scipy's t-tests where the model reduces to one, its false
positive rate on simulated null tables, its power at the minimum detectable difference it claims, pairing by seed,
and jackknife pseudo-values of macro F1 against a slow reference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssl_medbench.reports.paired import (
    PairedEstimate,
    detectable_noncentrality,
    paired_estimate,
    paired_table,
    pseudo_values,
)
from ssl_medbench.reports.stats import compare_to_baseline, descriptive, holm, primary_comparisons

#: Monte Carlo tables per simulation; 3 standard errors of a 5 % rate over them is 0.021.
TABLES = 1000


def _crossed(rng: np.random.Generator, seeds: int, subjects: int, shift: float = 0.0) -> np.ndarray:
    """A seeds x subjects table of differences with seed (sd 0.05), subject (sd 0.03) and residual (sd 0.05) effects."""
    return (
        shift
        + rng.normal(0, 0.05, (seeds, 1))
        + rng.normal(0, 0.03, (1, subjects))
        + rng.normal(0, 0.05, (seeds, subjects))
    )


def test_variance_and_degrees_of_freedom_match_the_method_of_moments_worked_by_hand() -> None:
    table = np.array([[0.10, 0.30, 0.20, 0.00], [0.50, 0.20, 0.60, 0.40], [0.00, -0.10, 0.30, 0.10]])
    seeds, subjects = table.shape
    grand = table.mean()
    rows, columns = table.mean(axis=1), table.mean(axis=0)
    ms_seed = subjects * sum((r - grand) ** 2 for r in rows) / (seeds - 1)
    ms_subject = seeds * sum((c - grand) ** 2 for c in columns) / (subjects - 1)
    ms_error = sum((table[s, j] - rows[s] - columns[j] + grand) ** 2 for s in range(seeds) for j in range(subjects)) / (
        (seeds - 1) * (subjects - 1)
    )
    assert ms_seed > ms_error and ms_subject > ms_error  # both components above zero: the full formula
    combined = ms_seed + ms_subject - ms_error
    df = combined**2 / (ms_seed**2 / 2 + ms_subject**2 / 3 + ms_error**2 / 6)
    error = np.sqrt(combined / (seeds * subjects))
    estimate = paired_estimate(table)
    assert estimate.mean_difference == pytest.approx(grand)
    assert estimate.standard_error == pytest.approx(error)
    assert estimate.degrees_of_freedom == pytest.approx(df)
    assert estimate.p_value == pytest.approx(2 * stats.t.sf(grand / error, df))
    half = stats.t.ppf(0.975, df) * error
    assert (estimate.ci_low, estimate.ci_high) == pytest.approx((grand - half, grand + half))
    assert (estimate.n_seeds, estimate.n_subjects) == (3, 4)


def test_fewer_than_three_seeds_or_two_subjects_are_not_testable_but_keep_their_mean() -> None:
    """One seed hides the seed variance (a null table was rejected 38-78 % of the time), two reject up to 12.5 %."""
    values = np.array([[0.2, -0.1, 0.4, 0.3, 0.0, 0.25], [0.1, 0.0, 0.3, 0.2, 0.1, 0.2]])
    for table in (values[:1], values, values[:, :1].repeat(4, axis=1).T[:, :1]):
        estimate = paired_estimate(table)
        assert estimate.mean_difference == pytest.approx(table.mean())
        assert np.isnan([estimate.p_value, estimate.ci_low, estimate.ci_high, estimate.standard_error]).all()
        assert np.isnan(estimate.min_detectable_difference())
        assert (estimate.n_seeds, estimate.n_subjects) == table.shape  # the table says how many it paired
    assert not np.isnan(paired_estimate(np.vstack([values, values[:1] + 0.05])).p_value)


def test_a_component_estimated_below_zero_drops_out_leaving_scipys_t_test_over_the_other_factors_means() -> None:
    rng = np.random.default_rng(3)
    no_seed_effect = rng.normal(0, 0.2, (1, 8)) + rng.normal(0.1, 0.01, (4, 8))  # subjects vary, seeds do not
    estimate = paired_estimate(no_seed_effect)
    reference = stats.ttest_1samp(no_seed_effect.mean(axis=0), 0.0)
    assert estimate.p_value == pytest.approx(reference.pvalue)
    assert estimate.degrees_of_freedom == pytest.approx(7)
    no_subject_effect = no_seed_effect.T
    assert paired_estimate(no_subject_effect).p_value == pytest.approx(reference.pvalue)


def test_identical_arms_give_p_one_and_a_constant_shift_nothing_to_test_against() -> None:
    identical = paired_estimate(np.zeros((3, 5)))
    assert identical.p_value == 1.0 and identical.ci_low == identical.ci_high == 0.0
    assert (identical.mean_difference, identical.standard_error, identical.n_seeds, identical.n_subjects) == (
        0,
        0,
        3,
        5,
    )
    shifted = paired_estimate(np.full((3, 5), 0.2))
    assert shifted.mean_difference == pytest.approx(0.2) and np.isnan(shifted.p_value) and np.isnan(shifted.ci_low)
    assert (shifted.standard_error, shifted.n_seeds, shifted.n_subjects) == (0, 3, 5)
    with pytest.raises(ValueError, match="complete"):
        paired_estimate(np.array([[0.1, np.nan], [0.2, 0.3]]))


def test_null_tables_with_seed_and_subject_effects_are_rejected_at_most_five_percent_plus_monte_carlo_error() -> None:
    rng = np.random.default_rng(2026)
    rejected = np.mean([paired_estimate(_crossed(rng, 5, 12)).p_value < 0.05 for _ in range(TABLES)])
    assert rejected <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / TABLES)


def test_averaging_seeds_first_as_before_would_have_failed_the_same_null_check() -> None:
    """The check above can fail: testing subject means over seeds ignores the seed effect and rejects too often."""
    rng = np.random.default_rng(2026)
    tables = [_crossed(rng, 5, 12) for _ in range(TABLES)]
    rejected = np.mean([stats.ttest_1samp(t.mean(axis=0), 0.0).pvalue < 0.05 for t in tables])
    assert rejected > 0.05 + 3 * np.sqrt(0.05 * 0.95 / TABLES)


def test_a_planted_difference_of_the_claimed_minimum_detectable_size_is_found_with_about_80_percent_power() -> None:
    rng = np.random.default_rng(7)
    seeds, subjects = 5, 12
    true_error = np.sqrt(0.05**2 / seeds + 0.03**2 / subjects + 0.05**2 / (seeds * subjects))
    median_df = np.median([paired_estimate(_crossed(rng, seeds, subjects)).degrees_of_freedom for _ in range(200)])
    planted = detectable_noncentrality(median_df) * true_error
    found = np.mean([paired_estimate(_crossed(rng, seeds, subjects, planted)).p_value < 0.05 for _ in range(TABLES)])
    assert abs(found - 0.8) < 0.05


def test_detectable_noncentrality_is_the_normal_answer_for_many_degrees_of_freedom_and_larger_for_few() -> None:
    normal = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert detectable_noncentrality(1e6) == pytest.approx(normal, abs=1e-3)
    assert detectable_noncentrality(3) > detectable_noncentrality(10) > normal
    power = stats.nct.sf(stats.t.ppf(0.975, 4), 4, detectable_noncentrality(4))
    assert power == pytest.approx(0.8, abs=1e-3)  # the lower tail adds almost nothing


def _long(values: dict[tuple[str, int], list[float]], fraction: float = 1.0) -> pd.DataFrame:
    rows = []
    for (arm, seed), scores in values.items():
        for index, score in enumerate(scores):
            rows.append(
                {"budget": fraction, "initialisation": arm, "seed": seed, "subject_id": f"s{index}", "dice": score}
            )
    return pd.DataFrame(rows)


def test_only_seeds_finished_in_both_arms_and_subjects_scored_in_all_their_cells_are_paired() -> None:
    scores = _long(
        {
            ("RD", 0): [0.5, 0.6, 0.7],
            ("RD", 1): [0.4, 0.6, np.nan],
            ("RD", 2): [0.5, 0.5, 0.5],
            ("RD", 3): [0.6, 0.5, 0.4],
            ("CR", 0): [0.6, 0.8, 0.7],
            ("CR", 1): [0.5, 0.9, 0.9],
            ("CR", 3): [0.6, 0.6, 0.6],
            ("CR", 4): [0.9, 0.9, 0.9],  # a seed Random has not finished
        }
    )
    table, seeds, subjects = paired_table(
        scores[scores.initialisation == "CR"], scores[scores.initialisation == "RD"], "dice"
    )
    assert seeds == [0, 1, 3] and subjects == ["s0", "s1"]
    np.testing.assert_allclose(table, [[0.1, 0.2], [0.1, 0.3], [0.0, 0.1]])
    row = compare_to_baseline("seg", scores, ["dice"], ["CR"]).iloc[0]
    assert (row.n_seeds, row.n_subjects) == (3, 2)
    assert row.mean_difference == pytest.approx(0.8 / 6)
    assert row.p_value == pytest.approx(paired_estimate(table).p_value)


def test_pairing_is_by_seed_so_a_table_with_shuffled_seeds_gives_another_interval() -> None:
    rng = np.random.default_rng(0)
    seed_effects = rng.normal(0, 0.2, 4)
    values = {}
    for seed in range(4):
        base = 0.5 + seed_effects[seed] + rng.normal(0, 0.02, 6)
        values[("RD", seed)] = list(base)
        values[("CR", seed)] = list(base + 0.05 + rng.normal(0, 0.02, 6))
    paired = compare_to_baseline("seg", _long(values), ["dice"], ["CR"]).iloc[0]
    shuffled = {("CR", (seed + 1) % 4) if arm == "CR" else (arm, seed): v for (arm, seed), v in values.items()}
    mixed = compare_to_baseline("seg", _long(shuffled), ["dice"], ["CR"]).iloc[0]
    assert paired.mean_difference == pytest.approx(mixed.mean_difference)  # same cells, other pairs
    assert paired.ci_high - paired.ci_low < (mixed.ci_high - mixed.ci_low) / 3
    assert paired.p_value < 0.05 < mixed.p_value


def test_a_whole_set_metric_is_estimated_from_its_corpus_values_and_budgets_without_random_are_skipped() -> None:
    scores = pd.concat(
        [
            _long({("RD", 0): [0.5, 0.6], ("RD", 1): [0.4, 0.5], ("CR", 0): [0.7, 0.6], ("CR", 1): [0.6, 0.6]}),
            _long({("CR", 0): [0.9, 0.9]}, fraction=0.5),
        ]
    )
    corpus = pd.DataFrame(
        {
            "budget": 1.0,
            "initialisation": ["RD", "RD", "CR", "CR"],
            "seed": [0, 1, 0, 1],
            "dice": [0.5, 0.4, 0.8, 0.6],
        }
    )
    table = compare_to_baseline("cls", scores, ["dice"], ["CR"], corpus)
    assert list(table["budget"]) == [1.0]
    assert table.iloc[0].mean_difference == pytest.approx(((0.8 - 0.5) + (0.6 - 0.4)) / 2)


def test_a_family_is_adjusted_by_holm_and_its_detectable_difference_given_at_holms_first_level() -> None:
    rng = np.random.default_rng(1)
    rows = [paired_estimate(_crossed(rng, 5, 12, shift)) for shift in (0.0, 0.02, 0.05)]
    table = pd.DataFrame([vars(row) for row in rows]).assign(p_value=[0.01, 0.04, 0.03])
    table = pd.concat([table, pd.DataFrame([{"p_value": np.nan}])], ignore_index=True)
    family = primary_comparisons(table)
    np.testing.assert_allclose(family["p_adjusted"], [0.03, 0.06, 0.06, np.nan])
    expected = [row.min_detectable_difference(alpha=0.05 / 3) for row in rows]
    np.testing.assert_allclose(family["min_detectable_difference"][:3], expected)
    assert all(e > row.min_detectable_difference() for e, row in zip(expected, rows))
    assert np.isnan(family["min_detectable_difference"][3])


def test_untested_metrics_keep_intervals_without_p_values() -> None:
    table = pd.DataFrame({"p_value": [0.01, 0.04, 0.03, np.nan], "ci_low": [0.1, 0.2, 0.3, 0.4]})
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])
    described = descriptive(table)
    assert described["p_value"].isna().all() and described["p_adjusted"].isna().all()
    assert list(described["ci_low"]) == [0.1, 0.2, 0.3, 0.4]


def _macro_f1_by_hand(rows: list[tuple[int, int]], labels: list[int]) -> float:
    """Macro F1 counted in plain Python: per label 2 TP / (2 TP + FP + FN), 0 when undefined."""
    scores = []
    for label in labels:
        tp = sum(1 for t, p in rows if t == label and p == label)
        fp = sum(1 for t, p in rows if t != label and p == label)
        fn = sum(1 for t, p in rows if t == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def test_jackknife_pseudo_values_of_macro_f1_agree_with_a_slow_reference_and_of_a_mean_are_the_values() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(5)
    images = pd.DataFrame(
        {
            "subject_id": np.repeat([f"p{i}" for i in range(6)], 5),
            "true_class": rng.integers(0, 3, 30),
            "predicted_class": rng.integers(0, 3, 30),
        }
    )

    def macro_f1(table: pd.DataFrame) -> dict[str, float]:
        true, predicted = table["true_class"], table["predicted_class"]
        return {"f1": f1_score(true, predicted, labels=[0, 1, 2], average="macro", zero_division=0)}

    fast = pseudo_values(images, macro_f1)
    pairs = {s: list(zip(g["true_class"], g["predicted_class"])) for s, g in images.groupby("subject_id")}
    everything = [pair for rows in pairs.values() for pair in rows]
    full = _macro_f1_by_hand(everything, [0, 1, 2])
    for subject in pairs:
        others = [pair for s, r in pairs.items() if s != subject for pair in r]
        assert fast.loc[subject, "f1"] == pytest.approx(6 * full - 5 * _macro_f1_by_hand(others, [0, 1, 2]))
    values = pd.DataFrame({"subject_id": ["a", "b", "c"], "dice": [0.2, 0.5, 0.8]})
    np.testing.assert_allclose(pseudo_values(values, lambda t: {"dice": t["dice"].mean()})["dice"], [0.2, 0.5, 0.8])
    with pytest.raises(ValueError, match="at least 2"):
        pseudo_values(values.iloc[:1], lambda t: {"dice": t["dice"].mean()})


def test_the_detectable_difference_is_the_noncentrality_times_the_standard_error_and_scales_with_the_table() -> None:
    table = _crossed(np.random.default_rng(5), 5, 8)
    estimate, tenfold = paired_estimate(table), paired_estimate(10 * table)
    assert estimate.min_detectable_difference() == pytest.approx(
        detectable_noncentrality(estimate.degrees_of_freedom) * estimate.standard_error
    )
    assert tenfold.min_detectable_difference() == pytest.approx(10 * estimate.min_detectable_difference())
    assert estimate.min_detectable_difference(power=0.9) > estimate.min_detectable_difference()


def test_an_estimate_read_back_from_its_table_row_is_the_same_estimate() -> None:
    estimate = paired_estimate(_crossed(np.random.default_rng(6), 4, 6, shift=0.1))
    assert PairedEstimate.from_row(pd.Series(dataclasses.asdict(estimate))) == estimate


def test_a_jackknife_over_two_subjects_is_allowed_and_indexed_by_subject() -> None:
    table = pd.DataFrame({"subject_id": ["a", "a", "b"], "value": [1.0, 3.0, 5.0]})
    values = pseudo_values(table, lambda rows: {"mean": rows["value"].mean()})
    # N = 2: 2 * mean(all) - mean(without the subject); mean(all) = 3
    assert values.index.name == "subject_id" and list(values.index) == ["a", "b"]
    np.testing.assert_allclose(values["mean"], [2 * 3 - 5, 2 * 3 - 2])
    with pytest.raises(ValueError, match="at least 2 test subjects, got 1"):
        pseudo_values(table[table.subject_id == "a"], lambda rows: {"mean": rows["value"].mean()})
