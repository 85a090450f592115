"""Statistics of the report: each initialisation against Random (RD) at the same label fraction, paired over test subjects.

Each subject's score is first averaged over the seeds that finished, for both initialisations; the
subjects scored by both are the pairs. For each (task, fraction, initialisation, metric):

* mean difference (initialisation - RD, in the metric's own units) with a percentile bootstrap 95 %
  confidence interval (subjects resampled with replacement, ``BOOTSTRAP_SAMPLES`` resamples, fixed seed);
* two-sided Wilcoxon signed-rank test (scipy, exact for small samples where scipy uses it) on the
  paired differences; p = 1 when every difference is zero;
* Holm's step-down correction over all comparisons of one task's table.

A rank summary orders the initialisations within each (task, fraction, metric) by their mean over
seeds (1 = best, respecting the metric's direction, ties averaged) and averages the ranks per task.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

BASELINE = "RD"
BOOTSTRAP_SAMPLES = 5000
BOOTSTRAP_SEED = 0


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (monotone, capped at 1), NaN kept as NaN."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid])]  # tied p-values get one adjusted value in either order
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def bootstrap_ci(
    differences: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``differences``."""
    rng = np.random.default_rng(seed)
    means = rng.choice(differences, size=(samples, len(differences)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    if np.all(differences == 0):
        return 1.0
    return float(stats.wilcoxon(differences).pvalue)


def compare_to_baseline(scores: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """``scores``: one row per (fraction, initialisation, seed, subject_id) with metric columns.

    Returns one row per (fraction, initialisation != RD, metric) with n_subjects, n_seeds, mean_difference,
    ci_low, ci_high, p_value, p_holm.
    """
    rows = []
    per_subject = scores.groupby(["fraction", "initialisation", "subject_id"])[metrics].mean()
    seeds = scores.groupby(["fraction", "initialisation"])["seed"].nunique()
    for fraction in sorted(scores["fraction"].unique(), reverse=True):
        if (fraction, BASELINE) not in seeds.index:
            continue
        baseline = per_subject.loc[(fraction, BASELINE)]
        for label in sorted(set(scores.loc[scores["fraction"] == fraction, "initialisation"]) - {BASELINE}):
            other = per_subject.loc[(fraction, label)]
            for metric in metrics:
                paired = pd.concat([other[metric], baseline[metric]], axis=1, keys=["other", "base"]).dropna()
                differences = (paired["other"] - paired["base"]).to_numpy()
                row = {
                    "fraction": fraction,
                    "initialisation": label,
                    "metric": metric,
                    "n_subjects": len(differences),
                    "n_seeds": int(seeds[(fraction, label)]),
                    "baseline_seeds": int(seeds[(fraction, BASELINE)]),
                }
                if len(differences):
                    row["mean_difference"] = float(differences.mean())
                    row["ci_low"], row["ci_high"] = bootstrap_ci(differences)
                    row["p_value"] = wilcoxon_p(differences)
                rows.append(row)
    table = pd.DataFrame(
        rows,
        columns=[
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
        ],
    )
    table["p_holm"] = holm(table["p_value"].to_numpy())
    return table


def rank_summary(means: pd.DataFrame, directions: dict[str, dict[str, str]]) -> pd.DataFrame:
    """``means``: columns task, fraction, initialisation, metric, mean. Returns the mean rank per initialisation (rows) and task (columns)."""
    ranked = []
    for (task, _fraction, metric), group in means.dropna(subset=["mean"]).groupby(["task", "fraction", "metric"]):
        ascending = directions[task].get(metric) == "lower"  # higher is better unless declared lower
        ranked.append(group.assign(rank=group["mean"].rank(ascending=ascending, method="average")))
    if not ranked:
        return pd.DataFrame()
    table = pd.concat(ranked).pivot_table(index="initialisation", columns="task", values="rank", aggfunc="mean")
    table["mean rank"] = table.mean(axis=1)
    return table.sort_values("mean rank")
