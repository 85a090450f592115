"""Patient-level splits and nested label budgets.

The test set is drawn once from ``split_seed`` (a dataset setting, not the grid's seed), so it is
identical across label budgets, seeds and initialisations. A label budget is a fraction of the training subjects
(Chen et al. 2019: 25, 50, 100 %) or a number of them ("10 labelled cases", as in Zhou et al.'s Models Genesis
studies); every budget takes a prefix of one seeded permutation of the training subjects, so 2 subjects lie within
5 within 25 % within 50 % within 100 %.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
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


@functools.total_ordering
@dataclass(frozen=True)
class LabelBudget:
    """How many training subjects a cell takes labels from: a ``fraction`` of them or a number of ``subjects``.

    Exactly one of the two is set (:meth:`of_fraction`, :meth:`of_subjects`); shown as ``25%`` or ``10 subjects``.
    Budgets sort by ``labelled``, the subjects they labelled on a task's dataset, where it is known (reports set it from
    the runs); otherwise subject budgets come first (the few-label settings), each kind by its value.
    """

    fraction: float | None = None
    subjects: int | None = None
    #: How many training subjects the budget labelled on one task's dataset, where known: orders budgets, is not
    #: part of what the budget is (equality and hash ignore it).
    labelled: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.subjects is None):
            raise ValueError("a label budget is either a fraction or a number of subjects")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"label fraction must lie in (0, 1], got {self.fraction}")
        if self.subjects is not None and (isinstance(self.subjects, bool) or self.subjects < 1):
            raise ConfigError(f"a label budget in subjects must be a whole number >= 1, got {self.subjects}")

    @classmethod
    def of_fraction(cls, fraction: float) -> LabelBudget:
        return cls(fraction=float(fraction))

    @classmethod
    def of_subjects(cls, subjects: int) -> LabelBudget:
        return cls(subjects=subjects)

    def count(self, total: int) -> int:
        """How many of ``total`` training subjects this budget labels: ``floor(fraction * total)`` or ``subjects``;
        ConfigError if that is none or more than there are."""
        if self.subjects is not None:
            if self.subjects > total:
                raise ConfigError(f"a label budget of {self} needs {self.subjects} training subjects, found {total}")
            return self.subjects
        count = math.floor(float(self.fraction) * total + 1e-9)
        if count == 0:
            raise ConfigError(f"label fraction {self.fraction} of {total} training subjects leaves no labelled subject")
        return count

    def setting(self) -> dict[str, float | int]:
        """The budget as the grid writes it: ``{"label_fraction": f}`` or ``{"label_subjects": n}`` (also the names of
        its run tag and parameter)."""
        if self.subjects is not None:
            return {"label_subjects": self.subjects}
        return {"label_fraction": float(self.fraction)}

    @property
    def slug(self) -> str:
        """A short name for job names: ``0.25`` or ``10subjects``."""
        return f"{self.fraction:g}" if self.fraction is not None else f"{self.subjects}subjects"

    def _order(self) -> tuple[bool, int, int, float]:
        kind = (0, float(self.subjects)) if self.subjects is not None else (1, float(self.fraction))
        return (self.labelled is None, self.labelled or 0, *kind)

    def __lt__(self, other: LabelBudget) -> bool:
        if not isinstance(other, LabelBudget):
            return NotImplemented
        return self._order() < other._order()

    def __str__(self) -> str:
        if self.subjects is not None:
            return f"{self.subjects} subject{'s' if self.subjects != 1 else ''}"
        return f"{float(self.fraction) * 100:g}%"


def as_budget(budget: LabelBudget | float) -> LabelBudget:
    """``budget`` itself, or a number read as a label fraction."""
    return budget if isinstance(budget, LabelBudget) else LabelBudget.of_fraction(budget)


def labelled_subjects(train: tuple[str, ...], budget: LabelBudget | float, seed: int) -> list[str]:
    """The first :meth:`LabelBudget.count` subjects of a permutation seeded by ``seed``: nested across budgets (a number
    is a fraction)."""
    count = as_budget(budget).count(len(train))
    permutation = np.random.default_rng(seed).permutation(len(train))
    return sorted(train[i] for i in permutation[:count])


def stratified_labelled_subjects(
    train: tuple[str, ...], strata: dict[str, str], budget: LabelBudget | float, seed: int
) -> list[str]:
    """Like :func:`labelled_subjects`, with every prefix (hence every budget) stratified by ``strata`` (subject -> class).

    Each stratum is permuted from ``seed``; its k-th subject (of n) gets the rank (k + 0.5) / n, and the
    subjects are taken in order of rank (ties in a seeded order). Every stratum thus contributes
    in proportion to its size, and a smaller budget stays nested in a larger one.
    """
    count = as_budget(budget).count(len(train))
    rng = np.random.default_rng(seed)
    ranked = []
    for stratum in sorted(set(strata[subject] for subject in train)):
        members = sorted(subject for subject in train if strata[subject] == stratum)
        for position, index in enumerate(rng.permutation(len(members))):
            ranked.append(((position + 0.5) / len(members), float(rng.random()), members[index]))
    return sorted(subject for _, _, subject in sorted(ranked)[:count])
