"""What the comparisons pair, read from each finished cell's per-subject table.

For every cell (an arm at a label budget and seed): each test subject's value of every per-subject metric
(the task's ``subject_scores``), and for the metrics defined over the whole test set only (the task's
``whole_set_scores``, e.g. macro F1) their value on the whole set and each subject's jackknife
pseudo-value (:func:`ssl_medbench.reports.paired.pseudo_values`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from ssl_medbench.downstream.base import DownstreamTask
from ssl_medbench.reports.paired import pseudo_values


@dataclass(frozen=True)
class ArmScores:
    #: One row per (budget, initialisation, seed, subject_id): per-subject values and whole-set metrics'
    #: pseudo-values.
    contributions: pd.DataFrame
    #: One row per (budget, initialisation, seed): whole-set metrics on the whole test set.
    whole_set: pd.DataFrame
    #: Cells whose table lacks what the task's scoring needs, as ``name (reason)``.
    unreadable: list[str]


def _cell_scores(
    plugin: type[DownstreamTask], table: pd.DataFrame, metrics: Sequence[str]
) -> tuple[pd.DataFrame, dict[str, float]]:
    per_subject = plugin.subject_scores(table, metrics).set_index("subject_id")
    whole = {name: value for name, value in plugin.whole_set_scores(table).items() if name in metrics}
    if whole and table["subject_id"].nunique() > 1:
        pseudo = pseudo_values(table, lambda rows: {name: plugin.whole_set_scores(rows)[name] for name in whole})
        per_subject = per_subject.join(pseudo, how="outer")
    return per_subject.reset_index(), whole


def arm_scores(
    plugin: type[DownstreamTask], cells: Sequence[tuple[pd.Series, pd.DataFrame, str]], metrics: Sequence[str]
) -> ArmScores:
    """``cells``: (the cell's run row with ``budget`` and ``seed``, its per-subject table, the arm it scores)."""
    contributions, whole_sets, unreadable = [], [], []
    for run, table, arm in cells:
        key = {"budget": run["budget"], "initialisation": arm, "seed": run["seed"]}
        try:
            per_subject, whole = _cell_scores(plugin, table, metrics)
        except (KeyError, ValueError) as error:  # a table without the columns the task's scoring reads
            name = run.get("mlflow.runName") or run["run_id"]
            unreadable.append(f"{name} (run {run['run_id']}; unreadable: {type(error).__name__})")
            continue
        contributions.append(per_subject.assign(**key))
        whole_sets.append(key | whole)
    return ArmScores(
        pd.concat(contributions, ignore_index=True) if contributions else pd.DataFrame(),
        pd.DataFrame(whole_sets),
        unreadable,
    )
