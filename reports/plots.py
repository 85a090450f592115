"""The report's figures, drawn with seaborn on matplotlib's Agg canvas (no display needed).

* metric against label budget (smallest first: subject counts, then fractions), one line per initialisation, with a
  95 % confidence band over seeds;
* per-subject distributions (box plot with the subjects as points) per initialisation at each label budget.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib import MatplotlibDeprecationWarning
from matplotlib.figure import Figure

from ssl_medbench.reports.tables import display_scale, init_order

COLUMNS = 4


def _scaled(values: pd.Series, unit: str) -> pd.Series:
    return values.astype(float) * display_scale(unit)


def _label(metric: str, unit: str) -> str:
    return f"{metric} ({'%' if unit == 'fraction' else unit})"


def metric_vs_budget(cells: pd.DataFrame, units: dict[str, str], path: Path) -> Path:
    """One panel per metric: mean over seeds against label budget (evenly spaced, smallest first) per
    initialisation, 95 % CI band (seaborn bootstrap)."""
    finished = cells[cells["status"] == "FINISHED"]
    metrics = [m for m in units if f"metrics.{m}" in finished]
    rows = -(-len(metrics) // COLUMNS)
    figure = Figure(figsize=(4.2 * min(COLUMNS, len(metrics)), 3.2 * rows), layout="constrained")
    axes = figure.subplots(rows, min(COLUMNS, len(metrics)), squeeze=False).ravel()
    order = init_order(finished["initialisation"])
    budgets = sorted(finished["budget"].unique())
    position = {budget: index for index, budget in enumerate(budgets)}
    for axis, metric in zip(axes, metrics):
        data = finished.assign(
            value=_scaled(finished[f"metrics.{metric}"], units[metric]),
            position=finished["budget"].map(position),
        )
        sns.lineplot(
            data=data,
            x="position",
            y="value",
            hue="initialisation",
            hue_order=order,
            marker="o",
            errorbar=("ci", 95),
            seed=0,
            ax=axis,
            legend=axis is axes[0],
        )
        axis.set_xticks(range(len(budgets)), [str(budget) for budget in budgets])
        axis.set_xlabel("labels")
        axis.set_ylabel(_label(metric, units[metric]))
    for axis in axes[len(metrics) :]:
        axis.set_visible(False)
    figure.savefig(path, dpi=100)
    return path


def subject_distributions(scores: pd.DataFrame, units: dict[str, str], path: Path) -> Path | None:
    """Per metric (rows) and label budget (columns): box plots of per-subject scores (mean over seeds) per initialisation."""
    metrics = [m for m in units if m in scores]
    if scores.empty or not metrics:
        return None
    per_subject = scores.groupby(["budget", "initialisation", "subject_id"], as_index=False)[metrics].mean()
    budgets = sorted(per_subject["budget"].unique(), reverse=True)
    labels = init_order(per_subject["initialisation"])
    figure = Figure(figsize=(max(4.0, 0.6 * len(labels)) * len(budgets), 3.0 * len(metrics)), layout="constrained")
    axes = figure.subplots(len(metrics), len(budgets), squeeze=False)
    for row, metric in enumerate(metrics):
        for column, budget in enumerate(budgets):
            data = (
                per_subject[per_subject["budget"] == budget]
                .assign(value=lambda d, metric=metric: _scaled(d[metric], units[metric]))
                .dropna(subset=["value"])
            )
            axis = axes[row, column]
            if data.empty:
                axis.text(0.5, 0.5, "no values", ha="center", va="center", transform=axis.transAxes)
                axis.set_axis_off()
                continue
            order = [
                label for label in init_order(per_subject["initialisation"]) if label in set(data["initialisation"])
            ]
            with warnings.catch_warnings():  # seaborn 0.13 still passes matplotlib's deprecated ``vert`` to boxplot
                warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
                sns.boxplot(
                    data=data, x="initialisation", y="value", order=order, color="#dbe6f1", fliersize=0, ax=axis
                )
            sns.stripplot(
                data=data, x="initialisation", y="value", order=order, color="#1f4e79", size=3, jitter=0.15, ax=axis
            )
            axis.set_title(f"labels: {budget}", fontsize=9)
            axis.set_xlabel("")
            axis.set_ylabel(_label(metric, units[metric]))
            axis.tick_params(axis="x", labelrotation=45)
    figure.savefig(path, dpi=100)
    return path
