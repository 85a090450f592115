"""The paired difference of two arms scored on the same seeds and test subjects, with uncertainty from both.

Two arms (an initialisation and Random, say) trained with the same seed share the labelled subset and
the batch order, and every cell is scored on the same test subjects. So a comparison is a matrix of
differences ``D[s, j]`` (arm - baseline, seed ``s``, subject ``j``) over the seeds that finished in both
arms and the subjects scored in all of them. Its mean is the estimated difference. Its uncertainty has
two sources a benchmark must not ignore: training runs differ by seed, and test subjects are a sample.

The estimate's variance comes from a crossed random-effects model ``D[s, j] = mu + a_s + b_j + e_sj``
(seed effects ``a``, subject effects ``b``, residual ``e``) fitted by the ANOVA method of moments
(Searle, Casella & McCulloch 1992, "Variance Components", ch. 4) on the two-way table without
replication:

    MS_seed = N * sum_s (r_s - m)^2 / (S - 1)       r_s: mean of seed s's row, m: grand mean
    MS_subj = S * sum_j (c_j - m)^2 / (N - 1)       c_j: mean of subject j's column
    MS_err  = sum_sj (D - r_s - c_j + m)^2 / ((S - 1)(N - 1))
    Var(m)  = sigma_a^2 / S + sigma_b^2 / N + sigma_e^2 / (S N)
            = (MS_seed + MS_subj - MS_err) / (S N)   with each component floored at zero

(a floored component drops its mean square and its share of MS_err). Degrees of freedom by
Satterthwaite (1946); the 95 % interval and the two-sided p-value are Student t with those degrees
of freedom, so the interval excludes zero exactly when p < 0.05. Fewer than :data:`MIN_SEEDS` seeds or 2
subjects: not testable (interval and p NaN); every difference zero: p = 1; every difference the same
non-zero value: not testable. Measured on simulated null tables with seed and subject effects
(tests/test_report_paired.py; an independent audit of 20000 tables per setting): 5 seeds reject at most
5.9 %, 3 seeds up to 7.9 % when seed and subject variance are both large; zero components, heavy tails and
Dice with many exact zeros make it conservative (0.2-5 %); averaging each subject over seeds first and
testing subjects, as the report did before, rejected 13-26 %. An REML fit gives the same variance.

A metric defined over all test images only (macro F1) has no per-subject value. It enters the same
model through jackknife pseudo-values (Quenouille 1956; Tukey 1958): with subject ``j`` left out, the
metric is recomputed on the others, and ``N * full - (N - 1) * without_j`` is subject ``j``'s
contribution. For a mean over subjects the pseudo-values are the subjects' own values, so one code path
serves both kinds. Measured on 400 simulated null tables of macro F1 (5 seeds x 12 patients x 6 images,
4 classes, seed and patient effects) the test rejected 3.8 %; an audit found 1-5 % over 3-5 seeds x 4-60
patients, where a two-way bootstrap rejected up to 23 % and a patient-only bootstrap 22-62 %. A rare class that
lives in one patient vanishes when that patient is left out, which inflates the standard error (conservative). The point estimate stays the plain mean over seeds of the metric's difference on the
whole test set.

The minimum detectable difference is the true difference this comparison would find with 80 % power
at level ``alpha`` given the variance it observed: ``lambda * SE``, where a noncentral t with ``df``
degrees of freedom and noncentrality ``lambda`` exceeds the two-sided critical value with probability 0.8.
Measured (2000 tables each), a planted difference of that size is found 74-81 % of the time. The report
gives it at its family's Bonferroni level (5 % / comparisons, Holm's first step), the level its verdict uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

#: Power at which the minimum detectable difference is given.
POWER = 0.8
ALPHA = 0.05
#: Fewest seeds paired in both arms for an interval and a p-value. With 1 the seed variance is unknown (a null
#: table with seed effects was rejected 38-78 % of the time); with 2 the test rejected up to 12.5 %.
MIN_SEEDS = 3


@dataclass(frozen=True)
class PairedEstimate:
    """Mean difference (arm - baseline) with its standard error, Satterthwaite degrees of freedom, 95 % interval and
    two-sided p-value; NaN where the table cannot give them (fewer than two differences)."""

    mean_difference: float
    standard_error: float
    degrees_of_freedom: float
    ci_low: float
    ci_high: float
    p_value: float
    n_seeds: int
    n_subjects: int

    @classmethod
    def from_row(cls, row: pd.Series) -> PairedEstimate:
        """The estimate a comparison row holds (its mean difference, standard error, degrees of freedom, ...)."""
        return cls(
            row["mean_difference"],
            row["standard_error"],
            row["degrees_of_freedom"],
            row["ci_low"],
            row["ci_high"],
            row["p_value"],
            row["n_seeds"],
            row["n_subjects"],
        )

    def min_detectable_difference(self, alpha: float = ALPHA, power: float = POWER) -> float:
        """Smallest true difference found with probability ``power`` by this two-sided t-test at level ``alpha``,
        taking the observed standard error as the true one (noncentral t)."""
        if np.isnan(self.degrees_of_freedom) or np.isnan(self.standard_error):
            return float("nan")
        return float(detectable_noncentrality(self.degrees_of_freedom, alpha, power) * self.standard_error)


def detectable_noncentrality(df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The noncentrality ``delta / SE`` at which a two-sided t-test with ``df`` degrees of freedom rejects at level
    ``alpha`` with probability ``power``."""
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(noncentrality: float) -> float:
        lower = np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality))  # NaN far in the tail: 0
        return float(stats.nct.sf(critical, df, noncentrality) + lower - power)

    upper = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)  # the normal answer, a lower bound
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper))


def _mean_squares(differences: np.ndarray) -> tuple[float, float, float]:
    """(MS_seed, MS_subj, MS_err) of a complete seeds x subjects table with at least 2 of each."""
    seeds, subjects = differences.shape
    grand = differences.mean()
    rows, columns = differences.mean(axis=1), differences.mean(axis=0)
    ms_seed = subjects * np.sum((rows - grand) ** 2) / (seeds - 1)
    ms_subject = seeds * np.sum((columns - grand) ** 2) / (subjects - 1)
    residual = differences - rows[:, None] - columns[None, :] + grand
    ms_error = np.sum(residual**2) / ((seeds - 1) * (subjects - 1))
    return float(ms_seed), float(ms_subject), float(ms_error)


def _variance_of_mean(differences: np.ndarray) -> tuple[float, float]:
    """(Var of the grand mean, Satterthwaite degrees of freedom) under the crossed random-effects model."""
    seeds, subjects = differences.shape
    ms_seed, ms_subject, ms_error = _mean_squares(differences)
    terms = [(ms_error, (seeds - 1) * (subjects - 1), 1.0)]  # (mean square, its df, coefficient)
    for mean_square, df in ((ms_seed, seeds - 1), (ms_subject, subjects - 1)):
        if mean_square > ms_error:  # a variance component estimated above zero
            terms.append((mean_square, df, 1.0))
            terms[0] = (ms_error, terms[0][1], terms[0][2] - 1.0)
    total = sum(coefficient * ms for ms, _, coefficient in terms) / (seeds * subjects)
    denominator = sum((coefficient * ms) ** 2 / df for ms, df, coefficient in terms if coefficient)
    df = (total * seeds * subjects) ** 2 / denominator if denominator > 0 else np.inf
    return float(total), float(df)


def paired_estimate(differences: np.ndarray, centre: float | None = None) -> PairedEstimate:
    """The estimate from a complete seeds x subjects table of differences; ``centre`` replaces its mean as the point
    estimate (a corpus metric's difference on the whole test set, whose pseudo-values only carry the variance)."""
    table = np.asarray(differences, dtype=float)
    if table.ndim != 2 or np.isnan(table).any():
        raise ValueError(f"expected a complete 2-D seeds x subjects table, got shape {table.shape} with NaN or not")
    seeds, subjects = table.shape
    mean = float(table.mean()) if centre is None else float(centre)
    nan = float("nan")
    if seeds < MIN_SEEDS or subjects < 2:
        return PairedEstimate(mean, nan, nan, nan, nan, nan, seeds, subjects)
    if np.all(table == 0):  # the two arms scored identically everywhere
        return PairedEstimate(mean, 0.0, nan, 0.0, 0.0, 1.0, seeds, subjects)
    variance, df = _variance_of_mean(table)
    error = float(np.sqrt(max(variance, 0.0)))
    if error <= 1e-12 * max(1.0, abs(mean)):  # every difference the same non-zero value: no spread to test against
        return PairedEstimate(mean, 0.0, nan, nan, nan, nan, seeds, subjects)
    half_width = stats.t.ppf(0.975, df) * error
    p_value = float(2 * stats.t.sf(abs(mean) / error, df))
    return PairedEstimate(mean, error, df, mean - half_width, mean + half_width, p_value, seeds, subjects)


def pseudo_values(table: pd.DataFrame, score: Callable[[pd.DataFrame], Mapping[str, float]]) -> pd.DataFrame:
    """Jackknife pseudo-values per ``subject_id`` of ``table`` (rows of any grain, e.g. one per image) for each metric
    ``score`` computes over the whole table: ``N * score(all) - (N - 1) * score(all but the subject)``."""
    subjects = pd.unique(table["subject_id"])
    count = len(subjects)
    if count < 2:
        raise ValueError(f"a jackknife needs at least 2 test subjects, got {count}")
    full = pd.Series(score(table), dtype=float)
    rows = {
        subject: count * full - (count - 1) * pd.Series(score(table[table["subject_id"] != subject]), dtype=float)
        for subject in subjects
    }
    return pd.DataFrame(rows).T.rename_axis("subject_id")


def paired_table(arm: pd.DataFrame, baseline: pd.DataFrame, metric: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Seeds x subjects differences (arm - baseline) of ``metric`` from rows (``seed``, ``subject_id``, metric):
    only seeds present in both arms, and only subjects with a value in every one of those cells."""
    wide = [
        frame.pivot_table(index="seed", columns="subject_id", values=metric, aggfunc="mean")
        for frame in (arm, baseline)
    ]
    seeds = sorted(set(wide[0].index) & set(wide[1].index))
    subjects = sorted(set(wide[0].columns) & set(wide[1].columns))
    differences = wide[0].reindex(index=seeds, columns=subjects) - wide[1].reindex(index=seeds, columns=subjects)
    differences = differences.dropna(axis=1, how="any")
    return differences.to_numpy(), seeds, list(differences.columns)
