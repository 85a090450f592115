"""Patient-level splits and nested label fractions.

The test set is drawn once from ``split_seed`` (a dataset setting, not the grid's seed), so it is
identical across label fractions, seeds and initialisations. Label fractions take a prefix of one
seeded permutation of the training subjects, so 25 % lies within 50 % within 100 %.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssl_medbench.core.config_fields import bounded
from ssl_medbench.core.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    test: tuple[str, ...]

    def test_hash(self) -> str:
        """SHA-256 of the sorted test subject list, recorded in every run."""
        return hashlib.sha256("\n".join(sorted(self.test)).encode()).hexdigest()


def test_fraction_field(default: float) -> Any:
    """A dataset ``Config``'s ``test_fraction``: the share of subjects held out for testing, in (0, 1)."""
    return bounded(default, low=0, high=1, open_low=True, open_high=True)


def split_subjects(subject_ids: list[str], test_fraction: float, split_seed: int) -> Split:
    """Hold out ``round(test_fraction * n)`` subjects (at least one) for testing."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    ordered = sorted(subject_ids)
    if len(ordered) < 2:
        raise DataError(f"need at least 2 subjects for a train/test split, found {len(ordered)}")
    n_test = min(max(1, round(test_fraction * len(ordered))), len(ordered) - 1)
    permutation = np.random.default_rng(split_seed).permutation(len(ordered))
    test = sorted(ordered[i] for i in permutation[:n_test])
    train = sorted(ordered[i] for i in permutation[n_test:])
    return Split(train=tuple(train), test=tuple(test))


def labelled_subjects(train: tuple[str, ...], fraction: float, seed: int) -> list[str]:
    """The first ``floor(fraction * n)`` subjects of a permutation seeded by ``seed``: nested across fractions."""
    count = _labelled_count(len(train), fraction)
    permutation = np.random.default_rng(seed).permutation(len(train))
    return sorted(train[i] for i in permutation[:count])


def _labelled_count(total: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction must lie in (0, 1], got {fraction}")
    count = math.floor(fraction * total + 1e-9)
    if count == 0:
        raise ConfigError(f"label fraction {fraction} of {total} training subjects leaves no labelled subject")
    return count


def stratified_labelled_subjects(
    train: tuple[str, ...], strata: dict[str, str], fraction: float, seed: int
) -> list[str]:
    """Like :func:`labelled_subjects`, with every prefix (hence every fraction) stratified by ``strata`` (subject -> class).

    Each stratum is permuted from ``seed``; its k-th subject (of n) gets the rank (k + 0.5) / n, and the
    subjects are taken in order of rank (ties in a seeded order). Every stratum thus contributes
    in proportion to its size, and a smaller fraction stays nested in a larger one.
    """
    count = _labelled_count(len(train), fraction)
    rng = np.random.default_rng(seed)
    ranked = []
    for stratum in sorted(set(strata[subject] for subject in train)):
        members = sorted(subject for subject in train if strata[subject] == stratum)
        for position, index in enumerate(rng.permutation(len(members))):
            ranked.append(((position + 0.5) / len(members), float(rng.random()), members[index]))
    return sorted(subject for _, _, subject in sorted(ranked)[:count])
