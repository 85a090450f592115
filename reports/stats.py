"""The report's comparisons: each arm against Random (RD) at the same label budget and protocol, paired by seed and test subject.

An arm is an initialisation, a control (:data:`CONTROLS`) or the task's image-blind reference. For each
(budget, arm, metric) the seeds that finished in both arms and the subjects scored in every one of
their cells form a seeds x subjects table of differences (arm - RD, the metric's own units), estimated
by :func:`ssl_medbench.reports.paired.paired_estimate`: mean difference, 95 % interval, p-value and
minimum detectable difference at 80 % power, all from a crossed seeds x subjects random-effects model.

Only the task's primary endpoint is tested: Holm's step-down correction runs over one family, every
method against RD at every budget of the task (:func:`primary_comparisons`), and the minimum detectable
difference is given at that family's Bonferroni level; the controls' checks are a family of their own, so
adding a control never changes a method's adjusted p-value. The other metrics are described with their
intervals, untested (p columns empty).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.reports.paired import ALPHA, PairedEstimate, paired_estimate, paired_table

BASELINE = "RD"
#: Table label of the negative control (Random with an independent weight-initialisation stream).
NEGATIVE_CONTROL = "RD'"
#: Table label of the positive control (supervised pretraining on the downstream labels).
POSITIVE_CONTROL = "SUP"
#: Arm of the image-blind reference predictor (scored in every Random cell on its labelled subjects).
IMAGE_BLIND = "image-blind"
#: Arms shown as controls, never ranked among the methods.
CONTROLS = (NEGATIVE_CONTROL, POSITIVE_CONTROL, IMAGE_BLIND)

COLUMNS = [
    "task",
    "budget",
    "arm",
    "metric",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_adjusted",
    "n_seeds",
    "n_subjects",
    "min_detectable_difference",
]
#: Kept beside :data:`COLUMNS` while a family is adjusted (not written to the tables).
ESTIMATE_COLUMNS = ["standard_error", "degrees_of_freedom"]


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


def _whole_set_difference(corpus: pd.DataFrame | None, metric: str, arm: str, budget: LabelBudget, seeds: list[int]):
    """Mean over ``seeds`` of the arm's whole-test-set ``metric`` minus RD's (None for per-subject metrics)."""
    if corpus is None or metric not in corpus:
        return None
    values = corpus[corpus["budget"] == budget].pivot_table(
        index="seed", columns="initialisation", values=metric, aggfunc="mean"
    )
    return float((values.loc[seeds, arm] - values.loc[seeds, BASELINE]).mean())


def compare_to_baseline(
    task: str,
    contributions: pd.DataFrame,
    metrics: list[str],
    arms: list[str],
    corpus: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row of :data:`COLUMNS` per (budget, arm in ``arms``, metric), budgets largest first; p_adjusted empty.

    ``contributions``: one row per (budget, initialisation, seed, subject_id) with a column per metric, holding
    the subject's value (or its jackknife pseudo-value for a metric defined over the whole test set). ``corpus``:
    one row per (budget, initialisation, seed) with the whole-test-set value of such metrics, the point estimate.
    """
    rows = []
    for budget in sorted(contributions["budget"].unique(), reverse=True):
        at_budget = contributions[contributions["budget"] == budget]
        baseline = at_budget[at_budget["initialisation"] == BASELINE]
        if baseline.empty:
            continue
        for arm in arms:
            scored = at_budget[at_budget["initialisation"] == arm]
            if scored.empty:
                continue
            for metric in metrics:
                differences, seeds, subjects = paired_table(scored, baseline, metric)
                row = {"task": task, "budget": budget, "arm": arm, "metric": metric}
                row |= {"n_seeds": len(seeds), "n_subjects": len(subjects)}
                if differences.size:
                    centre = _whole_set_difference(corpus, metric, arm, budget, seeds)
                    estimate = paired_estimate(differences, centre)
                    row |= {
                        "mean_difference": estimate.mean_difference,
                        "ci_low": estimate.ci_low,
                        "ci_high": estimate.ci_high,
                        "p_value": estimate.p_value,
                        "min_detectable_difference": estimate.min_detectable_difference(),
                        "standard_error": estimate.standard_error,
                        "degrees_of_freedom": estimate.degrees_of_freedom,
                    }
                rows.append(row)
    return pd.DataFrame(rows, columns=[*COLUMNS, *ESTIMATE_COLUMNS])


def primary_comparisons(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` tested as one family: p_adjusted by Holm over its testable rows (m of them), and the minimum
    detectable difference at the level Holm's first step uses, ``ALPHA / m``."""
    testable = int(comparisons["p_value"].notna().sum())
    detectable = [
        PairedEstimate.from_row(row).min_detectable_difference(alpha=ALPHA / max(testable, 1))
        for _, row in comparisons.iterrows()
    ]
    return comparisons.assign(
        p_adjusted=holm(comparisons["p_value"].to_numpy()),
        min_detectable_difference=pd.Series(detectable, index=comparisons.index, dtype=float),
    )


def descriptive(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` of metrics that are not tested: their intervals stay, p-values are removed."""
    return comparisons.assign(p_value=np.nan, p_adjusted=np.nan)
