from __future__ import annotations

import dataclasses
import hashlib

import pytest

from benchmark.grid import check_plugin_config
from ssl_medbench.core.errors import ConfigError, DataError
from ssl_medbench.datasets import splits
from ssl_medbench.datasets.splits import Split, labelled_subjects, split_subjects, stratified_labelled_subjects

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
