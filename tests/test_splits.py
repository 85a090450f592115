from __future__ import annotations

import dataclasses
import hashlib

import pandas as pd
import pytest

from benchmark.grid import check_plugin_config
from ssl_medbench.core.errors import ConfigError, DataError
from ssl_medbench.datasets import splits
from ssl_medbench.datasets.splits import (
    LabelBudget,
    Split,
    labelled_subjects,
    split_subjects,
    stratified_labelled_subjects,
)

SUBJECTS = [f"S{i:03d}" for i in range(40)]


def test_split_is_patient_level_disjoint_and_fixed():
    split = split_subjects(SUBJECTS, 0.2, split_seed=0)
    assert len(split.test) == 8 and len(split.train) == 32
    assert not set(split.test) & set(split.train)
    assert set(split.test) | set(split.train) == set(SUBJECTS)
    assert split_subjects(list(reversed(SUBJECTS)), 0.2, split_seed=0) == split
    assert split.test_hash() == split_subjects(SUBJECTS, 0.2, 0).test_hash()
    assert split_subjects(SUBJECTS, 0.2, split_seed=1).test != split.test


def test_label_fractions_are_nested_and_seeded():
    train = split_subjects(SUBJECTS, 0.2, 0).train
    for seed in range(5):
        quarter, half, full = (set(labelled_subjects(train, f, seed)) for f in (0.25, 0.5, 1.0))
        assert len(quarter) == 8 and len(half) == 16 and full == set(train)
        assert quarter <= half <= full
    assert labelled_subjects(train, 0.5, 0) == labelled_subjects(train, 0.5, 0)
    assert labelled_subjects(train, 0.5, 0) != labelled_subjects(train, 0.5, 1)


def test_bad_fractions_and_too_few_subjects():
    train = tuple(SUBJECTS[:3])
    with pytest.raises(ConfigError, match="leaves no labelled subject"):
        labelled_subjects(train, 0.25, 0)
    for fraction in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            labelled_subjects(train, fraction, 0)
    with pytest.raises(DataError, match="at least 2 subjects"):
        split_subjects(["only"], 0.2, 0)
    with pytest.raises(ConfigError, match="test_fraction"):
        split_subjects(SUBJECTS, 1.0, 0)


@pytest.mark.parametrize(
    ("count", "fraction", "tested"),
    [
        (2, 0.5, 1),  # the smallest dataset: one subject each side
        (2, 0.01, 1),  # at least one test subject
        (3, 0.99, 2),  # at least one training subject
        (10, 0.05, 1),  # round(0.5) is 0: still one test subject
        (10, 0.25, 2),  # round(2.5) is 2 (round half to even)
        (10, 0.35, 4),  # round(3.5) is 4
    ],
)
def test_split_sizes_at_their_edges(count, fraction, tested):
    split = split_subjects(SUBJECTS[:count], fraction, 0)
    assert len(split.test) == tested and len(split.train) == count - tested


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_a_test_fraction_on_the_open_bounds_is_refused(fraction):
    with pytest.raises(ConfigError, match=r"test_fraction must lie in \(0, 1\)"):
        split_subjects(SUBJECTS, fraction, 0)


def test_the_test_hash_is_the_sha256_of_the_sorted_subjects_one_per_line():
    """The hash recorded with every run identifies the test set: the subjects sorted, joined by newlines (the text of
    a subject list file without its final newline), whatever their order or the training subjects."""
    split = Split(train=("S9",), test=("S2", "S10", "S1"))
    assert split.test_hash() == hashlib.sha256(b"S1\nS10\nS2").hexdigest()
    assert split.test_hash() == Split(train=(), test=("S1", "S10", "S2")).test_hash()


def test_a_declared_test_fraction_keeps_its_default_and_admits_only_the_open_unit_interval():
    """A dataset Config declaring ``test_fraction_field``: the grid's check refuses 0, 1 and values outside, accepts
    values strictly between, and the default is the one passed."""

    @dataclasses.dataclass(frozen=True)
    class Config:
        test_fraction: float = splits.test_fraction_field(0.3)  # imported as a name, pytest would collect it

    assert Config().test_fraction == 0.3
    for fraction in (1e-6, 0.5, 1 - 1e-6):
        check_plugin_config(Config(test_fraction=fraction), "datasets.toy")
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"datasets\.toy\.test_fraction: must be > 0 and < 1"):
            check_plugin_config(Config(test_fraction=fraction), "datasets.toy")


@pytest.mark.parametrize("seed", range(5))
def test_stratified_fractions_take_each_stratum_in_proportion(seed: int):
    """Three subjects of one class and one of another: a quarter takes one of the three (a class's first subject
    ranks at 1/6 against 1/2), three quarters take two of the three and the single one."""
    train = ("A1", "A2", "A3", "B1")
    strata = {"A1": "a", "A2": "a", "A3": "a", "B1": "b"}
    quarter = stratified_labelled_subjects(train, strata, 0.25, seed)
    three_quarters = stratified_labelled_subjects(train, strata, 0.75, seed)
    assert len(quarter) == 1 and quarter[0].startswith("A")
    assert len(three_quarters) == 3 and "B1" in three_quarters and set(quarter) <= set(three_quarters)
    assert stratified_labelled_subjects(train, strata, 1.0, seed) == list(train)


def test_stratified_fractions_follow_the_ranks_of_three_strata():
    """Strata of 6, 3 and 1 subjects ranked (k + 0.5) / n: 40 % takes 3, 1 and 0 of them, 80 % takes 5, 2 and 1."""
    strata = {f"{name}{k}": name for name, size in (("a", 6), ("b", 3), ("c", 1)) for k in range(size)}
    train = tuple(sorted(strata))
    for seed in range(3):
        for fraction, expected in ((0.4, [3, 1, 0]), (0.8, [5, 2, 1])):
            chosen = stratified_labelled_subjects(train, strata, fraction, seed)
            assert [sum(strata[s] == name for s in chosen) for name in "abc"] == expected


def test_label_budgets_in_subjects_and_fractions_are_prefixes_of_one_permutation():
    """1, 2, 5 subjects lie within 25 % (8 of 32) within 100 %, for every seed; a fraction given as a number reads as
    a fraction."""
    train = split_subjects(SUBJECTS, 0.2, 0).train
    budgets = [LabelBudget.of_subjects(n) for n in (1, 2, 5)] + [LabelBudget.of_fraction(f) for f in (0.25, 1.0)]
    for seed in range(5):
        chosen = [set(labelled_subjects(train, budget, seed)) for budget in budgets]
        assert [len(c) for c in chosen] == [1, 2, 5, 8, 32]
        assert all(smaller <= larger for smaller, larger in zip(chosen, chosen[1:]))
    assert labelled_subjects(train, 0.25, 3) == labelled_subjects(train, LabelBudget.of_fraction(0.25), 3)


def test_stratified_subject_budgets_take_the_largest_class_first_and_stay_nested():
    """Classes of 12, 6 and 2 subjects: each budget takes every class in proportion to its size (ranks (k + 0.5) / n),
    so one subject comes from the largest class, two from the two largest, ten hold 6, 3 and 1."""
    train = tuple(SUBJECTS[:20])
    strata = {s: "a" if i < 12 else "b" if i < 18 else "c" for i, s in enumerate(train)}
    for seed in range(4):
        previous: set[str] = set()
        for count, expected in (
            (1, {"a": 1}),
            (2, {"a": 1, "b": 1}),
            (4, {"a": 3, "b": 1}),
            (10, {"a": 6, "b": 3, "c": 1}),
        ):
            chosen = set(stratified_labelled_subjects(train, strata, LabelBudget.of_subjects(count), seed))
            classes = pd.Series([strata[s] for s in chosen]).value_counts().to_dict()
            assert classes == expected and previous <= chosen
            previous = chosen


def test_a_label_budget_is_one_kind_in_range_shown_and_ordered_subjects_first():
    assert [
        str(b) for b in (LabelBudget.of_fraction(0.25), LabelBudget.of_subjects(1), LabelBudget.of_subjects(10))
    ] == [
        "25%",
        "1 subject",
        "10 subjects",
    ]
    assert LabelBudget.of_subjects(10).slug == "10subjects" and LabelBudget.of_fraction(0.5).slug == "0.5"
    assert LabelBudget.of_subjects(10).setting() == {"label_subjects": 10}
    assert LabelBudget.of_fraction(0.5).setting() == {"label_fraction": 0.5}
    budgets = [
        LabelBudget.of_fraction(0.1),
        LabelBudget.of_subjects(50),
        LabelBudget.of_fraction(1.0),
        LabelBudget.of_subjects(2),
    ]
    assert [str(b) for b in sorted(budgets)] == ["2 subjects", "50 subjects", "10%", "100%"]
    assert (
        LabelBudget.of_fraction(0.5) == LabelBudget(fraction=0.5)
        and len({LabelBudget.of_subjects(2), LabelBudget(subjects=2)}) == 1
    )
    with pytest.raises(ValueError, match="either a fraction or a number of subjects"):
        LabelBudget(fraction=0.5, subjects=2)
    with pytest.raises(ConfigError, match="whole number >= 1, got 0"):
        LabelBudget.of_subjects(0)
    with pytest.raises(ConfigError, match=r"\(0, 1\], got 1.5"):
        LabelBudget.of_fraction(1.5)
    with pytest.raises(ConfigError, match="a label budget of 5 subjects needs 5 training subjects, found 4"):
        LabelBudget.of_subjects(5).count(4)
    assert LabelBudget.of_subjects(4).count(4) == 4 and LabelBudget.of_fraction(0.3).count(10) == 3


def test_budgets_with_their_labelled_counts_sort_by_size_and_keep_their_identity():
    """On a dataset of 24 training subjects 10 % labels 2: it sorts before 5 subjects, and is still the budget 10 %."""
    ten_percent = LabelBudget(fraction=0.1, labelled=2)
    five = LabelBudget(subjects=5, labelled=5)
    assert sorted([five, LabelBudget(fraction=1.0, labelled=24), ten_percent]) == [ten_percent, five, LabelBudget(1.0)]
    assert ten_percent == LabelBudget.of_fraction(0.1) and hash(ten_percent) == hash(LabelBudget.of_fraction(0.1))
    assert sorted([LabelBudget.of_fraction(0.1), LabelBudget.of_subjects(5)]) == [five, ten_percent]  # sizes unknown


def test_strata_of_equal_size_are_ranked_from_one_seeded_stream_not_by_name():
    """Two strata of five: with one generator for all strata, which stratum gives the first subject varies by seed."""
    ids = tuple(f"{c}{i}" for c in "ab" for i in range(5))
    strata = {s: s[0] for s in ids}
    firsts = {stratified_labelled_subjects(ids, strata, LabelBudget.of_subjects(1), seed)[0][0] for seed in range(20)}
    assert firsts == {"a", "b"}
