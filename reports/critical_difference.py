"""Critical-difference analysis of the initialisations across downstream tasks (Demšar 2006).

Reference: J. Demšar, "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30 (2006),
section 3.2.2 (Friedman test, Nemenyi post-hoc test); its Figure 1, the diagram, is drawn by
:mod:`ssl_medbench.reports.critical_difference_diagram`.

**Block**: one (downstream task, label budget), Demšar's "data set" (the report passes one block per task, its
budgets averaged, since budgets of one task share its test set and are not independent blocks). Its value for an initialisation is the mean
over seeds of the task's primary endpoint (rows with a missing value are left out before averaging). Only complete
blocks count, those where every initialisation of the table has a value; the others are dropped and counted.

**Ranks**: within a block the initialisations are ranked 1 = best by the task's direction ("higher" or "lower" is
better, so a distance in mm ranks its smallest value first). Tied values share the average of the ranks they span.
``R_j`` is initialisation j's average rank over the N blocks, k the number of initialisations.

**Friedman test** (null: all initialisations are equivalent, so all ``R_j`` are equal):
``chi2_F = 12 N / (k (k + 1)) * (sum_j R_j^2 - k (k + 1)^2 / 4)``, divided by the tie correction
``1 - sum(t^3 - t) / (N k (k^2 - 1))`` over the groups of t tied values (as ``scipy.stats.friedmanchisquare``), against
chi-square with k - 1 degrees of freedom. Computed here rather than by scipy, which refuses k = 2. When every block
ties every initialisation the statistic is 0 and p = 1.

**Nemenyi post-hoc test**: two initialisations differ at level alpha when their average ranks differ by at least
``CD = q_alpha * sqrt(k (k + 1) / (6 N))``, where ``q_alpha`` is the studentized range quantile (k groups, infinite
degrees of freedom) divided by sqrt(2) (2.569 for k = 4 at alpha 0.05, Demšar's Table 5a). The pairwise p-value is the
studentized range survival function at ``sqrt(2) |R_i - R_j| / sqrt(k (k + 1) / (6 N))``. No tie correction.

**Cliques**: the maximal runs of initialisations, in rank order, whose average ranks span less than CD: the groups
not significantly different from one another, joined by a bar in the diagram. Single initialisations are not cliques.

Fewer than 2 initialisations or 2 complete blocks raise :class:`NotEnoughBlocks`, for the report to catch and print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import sqrt

import numpy as np
import pandas as pd
from scipy import stats

from ssl_medbench.downstream.base import Direction

ALPHA = 0.05
BLOCK = ["task", "budget"]
COLUMNS = [*BLOCK, "initialisation", "value"]


class NotEnoughBlocks(Exception):
    """Fewer than 2 initialisations or 2 complete (task, budget) blocks: no Friedman test can be made."""

    def __init__(self, n_initialisations: int, n_blocks: int, dropped_blocks: int) -> None:
        self.n_initialisations = n_initialisations
        self.n_blocks = n_blocks
        self.dropped_blocks = dropped_blocks
        super().__init__(
            "critical-difference analysis needs at least 2 initialisations and 2 complete (task, budget) blocks; "
            f"got {n_initialisations} initialisations and {n_blocks} complete blocks "
            f"({dropped_blocks} dropped for a missing initialisation)"
        )


@dataclass(frozen=True, eq=False)
class CriticalDifference:
    """Friedman test and Nemenyi post-hoc test of the initialisations over N complete blocks."""

    #: Initialisation -> average rank over the blocks (1 = best), best first.
    average_ranks: pd.Series
    #: Rank of each initialisation (columns, in ``average_ranks`` order) in each block (rows: task, budget).
    block_ranks: pd.DataFrame
    #: Friedman's chi-square statistic (tie-corrected) and its p-value (k - 1 degrees of freedom).
    statistic: float
    p_value: float
    #: Nemenyi critical difference of average ranks at ``alpha``.
    critical_difference: float
    alpha: float
    n_blocks: int
    #: Blocks left out because at least one initialisation had no value there.
    dropped_blocks: int
    #: Pairwise Nemenyi p-values, symmetric, initialisations in ``average_ranks`` order, 1 on the diagonal.
    pairwise_p: pd.DataFrame
    #: Groups of initialisations (best first) not significantly different from one another, as drawn by bars.
    cliques: tuple[tuple[str, ...], ...]


def critical_difference(
    values: pd.DataFrame, directions: Mapping[str, Direction], alpha: float = ALPHA
) -> CriticalDifference:
    """Friedman + Nemenyi over (task, budget) blocks of ``values`` (columns task, budget, initialisation, value).

    ``values`` may hold one row per seed: each block's value is the mean of its rows. ``directions``: task -> "higher"
    or "lower" (which value of the task's primary endpoint is better). Raises :class:`NotEnoughBlocks`.
    """
    table, dropped = _block_table(values)
    n_blocks, k = table.shape
    if k < 2 or n_blocks < 2:
        raise NotEnoughBlocks(k, n_blocks, dropped)
    ranks = _ranks(table, directions)
    average = ranks.mean().sort_values(kind="stable")
    statistic, p_value = _friedman(ranks)
    cd = _critical_difference(k, n_blocks, alpha)
    return CriticalDifference(
        average_ranks=average.rename("average rank"),
        block_ranks=ranks[average.index],
        statistic=statistic,
        p_value=p_value,
        critical_difference=cd,
        alpha=alpha,
        n_blocks=n_blocks,
        dropped_blocks=dropped,
        pairwise_p=_nemenyi_p(average, n_blocks),
        cliques=_cliques(average, cd),
    )


def _block_table(values: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Blocks (rows) x initialisations (columns) of mean values, complete blocks only, and how many were dropped."""
    missing = [column for column in COLUMNS if column not in values.columns]
    if missing:
        raise ValueError(f"critical-difference input lacks the columns {missing}; expected {COLUMNS}")
    table = values.pivot_table(index=BLOCK, columns="initialisation", values="value", aggfunc="mean")
    complete = table.dropna()
    return complete, len(table) - len(complete)


def _ranks(table: pd.DataFrame, directions: Mapping[str, Direction]) -> pd.DataFrame:
    """Rank within each block, 1 = best by the block's task direction, ties averaged."""
    tasks = table.index.get_level_values("task")
    unknown = sorted({str(task) for task in tasks if directions.get(task) not in ("higher", "lower")})
    if unknown:
        raise ValueError(f"tasks {unknown} need a direction 'higher' or 'lower'; got {dict(directions)}")
    sign = np.where([directions[task] == "lower" for task in tasks], 1.0, -1.0)
    return table.mul(sign, axis=0).rank(axis=1, method="average")


def _friedman(ranks: pd.DataFrame) -> tuple[float, float]:
    """Friedman's tie-corrected chi-square of a blocks x initialisations rank table, and its p-value."""
    n, k = ranks.shape
    tied = sum(float((counts**3 - counts).sum()) for counts in _tie_sizes(ranks.to_numpy()))
    correction = 1.0 - tied / (n * k * (k * k - 1))
    if correction == 0.0:
        return 0.0, 1.0
    average = ranks.mean().to_numpy()
    statistic = 12.0 * n / (k * (k + 1)) * (float(np.sum(average**2)) - k * (k + 1) ** 2 / 4.0) / correction
    return statistic, float(stats.chi2.sf(statistic, k - 1))


def _tie_sizes(ranks: np.ndarray) -> list[np.ndarray]:
    """Per block, the sizes of its groups of equal ranks (tied values share one average rank)."""
    return [np.unique(row, return_counts=True)[1].astype(float) for row in ranks]


def _rank_scale(k: int, n_blocks: int) -> float:
    """Standard error of a difference of average ranks under the null: sqrt(k (k + 1) / (6 N))."""
    return sqrt(k * (k + 1) / (6.0 * n_blocks))


def _critical_difference(k: int, n_blocks: int, alpha: float) -> float:
    q_alpha = float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / sqrt(2.0)
    return q_alpha * _rank_scale(k, n_blocks)


def _nemenyi_p(average: pd.Series, n_blocks: int) -> pd.DataFrame:
    """Pairwise Nemenyi p-values of the average ranks, 1 on the diagonal."""
    k = len(average)
    ranks = average.to_numpy()
    distance = np.abs(ranks[:, None] - ranks[None, :]) / _rank_scale(k, n_blocks) * sqrt(2.0)
    p = stats.studentized_range.sf(distance, k, np.inf)
    np.fill_diagonal(p, 1.0)
    return pd.DataFrame(p, index=average.index, columns=average.index)


def _cliques(average: pd.Series, cd: float) -> tuple[tuple[str, ...], ...]:
    """Maximal runs (in rank order) of at least two initialisations whose average ranks span less than ``cd``."""
    ranks = average.to_numpy()
    labels = list(average.index)
    groups, last_end = [], 0
    for start, rank in enumerate(ranks):
        end = int(np.searchsorted(ranks, rank + cd, side="left")) - 1
        if end > start and end > last_end:
            groups.append(tuple(labels[start : end + 1]))
            last_end = end
    return tuple(groups)
