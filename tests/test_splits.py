from __future__ import annotations

import pytest

from ssl_medbench.core.errors import ConfigError, DataError
from ssl_medbench.datasets.splits import labelled_subjects, split_subjects

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
