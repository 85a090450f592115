"""The critical-difference diagram of a :class:`~ssl_medbench.reports.critical_difference.CriticalDifference`
(Demšar 2006, "Statistical comparisons of classifiers over multiple data sets", JMLR 7, Figure 1)."""

from __future__ import annotations

from math import ceil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssl_medbench.reports.critical_difference import CriticalDifference

# Diagram layout, in rank units across and in line steps down (the y axis points down from the rank scale at 0).
MARGIN = 0.15
BAR_TOP = 0.5
BAR_STEP = 0.3
LABEL_STEP = 0.6
TICK = 0.15


def plot_critical_difference(result: CriticalDifference, path: Path) -> Path:
    """Draw the critical-difference diagram of ``result`` (Demšar 2006, Figure 1) to the PNG ``path``; returns it.

    The rank scale runs from 1 (best, left) to k; each initialisation hangs from its average rank, the better half
    labelled on the left, the others on the right; thick bars join the cliques; the CD interval is drawn above.
    """
    k = len(result.average_ranks)
    first_label = BAR_TOP + BAR_STEP * len(result.cliques) + LABEL_STEP / 2
    depth = first_label + LABEL_STEP * (ceil(k / 2) - 1)
    figure = Figure(figsize=(6.0, 1.2 + 0.45 * depth))
    FigureCanvasAgg(figure)
    axis = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axis.set_axis_off()
    axis.set_xlim(1 - MARGIN, k + MARGIN)
    axis.set_ylim(depth + 0.3, -1.3)
    _draw_scale(axis, k, result)
    _draw_cliques(axis, result)
    _draw_labels(axis, result.average_ranks, first_label)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return path


def _draw_scale(axis: Axes, k: int, result: CriticalDifference) -> None:
    """The rank axis with integer ticks, and the CD interval above it starting at rank 1."""
    axis.plot([1, k], [0, 0], color="black", linewidth=1)
    for tick in np.arange(1, k + 0.5, 0.5):
        size = TICK if float(tick).is_integer() else TICK / 2
        axis.plot([tick, tick], [0, -size], color="black", linewidth=1)
    for tick in range(1, k + 1):
        axis.text(tick, -TICK - 0.05, str(tick), ha="center", va="bottom", fontsize=9)
    cd = result.critical_difference
    axis.plot([1, 1 + cd], [-0.95, -0.95], color="black", linewidth=1.5)
    for end in (1, 1 + cd):
        axis.plot([end, end], [-0.85, -1.05], color="black", linewidth=1)
    label = f"CD = {cd:.2f} (Nemenyi, α = {result.alpha:g}, N = {result.n_blocks} blocks)"
    axis.text(1 + cd + 0.05, -0.95, label, ha="left", va="center", fontsize=8)


def _draw_cliques(axis: Axes, result: CriticalDifference) -> None:
    """One thick bar per clique, from its best to its worst average rank, stacked below the scale."""
    ranks = result.average_ranks
    for level, clique in enumerate(result.cliques):
        y = BAR_TOP + BAR_STEP * level
        axis.plot([ranks[clique[0]] - 0.03, ranks[clique[-1]] + 0.03], [y, y], color="black", linewidth=3)


def _draw_labels(axis: Axes, ranks: pd.Series, first_label: float) -> None:
    """Each initialisation's elbow line from its rank down and out to its label; lines never cross."""
    left = ceil(len(ranks) / 2)
    sides = [(name, rank, index, "left") for index, (name, rank) in enumerate(ranks.iloc[:left].items())]
    right = ranks.iloc[left:]
    sides += [(name, rank, len(right) - 1 - index, "right") for index, (name, rank) in enumerate(right.items())]
    k = len(ranks)
    for name, rank, step, side in sides:
        y = first_label + LABEL_STEP * step
        end, gap = (1 - MARGIN, -0.05) if side == "left" else (k + MARGIN, 0.05)
        axis.plot([rank, rank, end], [0, y, y], color="black", linewidth=1)
        text = f"{name} ({rank:.2f})" if side == "left" else f"({rank:.2f}) {name}"
        axis.text(end + gap, y, text, ha="right" if side == "left" else "left", va="center", fontsize=9)
