"""Do the evaluation protocols rank the initialisations alike? Kendall's tau per task, label budget and protocol pair.

A linear probe and fine-tuning can order pretext tasks differently (e.g. lightly-ai/lightly #1419); a reader choosing
a pretext task needs to know whether the ranking they read holds under the protocol they will use. For each
(task, label budget) and each pair of protocols that both ran there, the initialisations scored by both (methods
only, controls apart; mean over seeds of the task's primary endpoint) are compared by Kendall's tau-b
(``scipy.stats.kendalltau``): 1 is the same order, -1 the reverse, 0 no relation. Ranking by "lower is better"
reverses both orders and leaves tau unchanged, so the metric's direction does not enter. With fewer than three
initialisations, or a protocol that scores them all alike, tau is undefined (NaN). Its p-value (exact for small
samples without ties) tests tau = 0 and says nothing about how close to 1 it is.
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from ssl_medbench.core.run_tags import PROTOCOLS

COLUMNS = ["task", "budget", "protocols", "initialisations", "kendall_tau", "p_value"]
#: Fewest initialisations whose orders a tau compares.
MIN_INITIALISATIONS = 3


def protocol_agreement(means: pd.DataFrame, primary: dict[str, str], controls: tuple[str, ...]) -> pd.DataFrame:
    """One row of :data:`COLUMNS` per (task, budget, protocol pair); ``means``: columns task, protocol, budget,
    initialisation, metric, mean (:func:`~ssl_medbench.reports.tables.cell_means` of every section); ``primary``:
    each task's primary endpoint; ``controls``: labels left out."""
    chosen = means[(means["metric"] == means["task"].map(primary)) & ~means["initialisation"].isin(controls)]
    rows = []
    for (task, budget), group in chosen.dropna(subset=["mean"]).groupby(["task", "budget"], sort=True):
        wide = group.pivot_table(index="initialisation", columns="protocol", values="mean")
        ran = [protocol for protocol in PROTOCOLS if protocol in wide] + sorted(set(wide) - set(PROTOCOLS))
        for first, second in combinations(ran, 2):
            both = wide[[first, second]].dropna()
            tau, p_value = _kendall(both[first].to_numpy(), both[second].to_numpy())
            rows.append([task, budget, f"{first} vs {second}", len(both), tau, p_value])
    return pd.DataFrame(rows, columns=COLUMNS)


def _kendall(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Kendall's tau-b and its p-value; NaN for fewer than :data:`MIN_INITIALISATIONS` values or a constant side."""
    if len(first) < MIN_INITIALISATIONS:
        return float("nan"), float("nan")
    with warnings.catch_warnings():  # a constant side: scipy warns and returns NaN
        warnings.simplefilter("ignore")
        result = kendalltau(first, second)
    return float(result.statistic), float(result.pvalue)
