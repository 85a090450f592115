"""Tables in the shape of Chen et al. (2019)'s Tables 3-5: rows label budget x initialisation, cells mean ± std over seeds.

The best mean per label budget and metric is marked (higher or lower is better per the task's
metric directions; ties all marked). A (budget, initialisation) seen anywhere in the task but with
no FINISHED run shows ``missing``; the ``failed`` and ``running`` columns count its other runs, ``collapsed`` its
FINISHED seeds whose model never predicted some class, region or organ of the test references.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ssl_medbench.core.run_tags import Tag

#: The paper's row order; other initialisations follow alphabetically.
PAPER_ORDER = ("RD", "RD+AG", "AE", "RP", "JS", "CP", "CR")


def init_order(labels) -> list[str]:
    labels = set(labels)
    known = [label for label in PAPER_ORDER if label in labels]
    return known + sorted(labels - set(known))


def cell_means(cells: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Long table: budget, initialisation, metric, mean, std (sample, over seeds), seeds; FINISHED runs only."""
    finished = cells[cells["status"] == "FINISHED"]
    rows = []
    for (budget, label), group in finished.groupby(["budget", "initialisation"]):
        for metric in metrics:
            column = f"metrics.{metric}"
            values = group[column].dropna().astype(float) if column in group else pd.Series(dtype=float)
            rows.append(
                {
                    "budget": budget,
                    "initialisation": label,
                    "metric": metric,
                    "mean": values.mean(),  # NaN without values
                    "std": values.std(ddof=1),  # NaN for fewer than two seeds
                    "seeds": len(values),
                }
            )
    return pd.DataFrame(rows, columns=["budget", "initialisation", "metric", "mean", "std", "seeds"])


def collapsed_seeds(group: pd.DataFrame) -> int:
    """FINISHED runs of ``group`` whose model predicted some class, region or organ for no test subject."""
    if Tag.NEVER_PREDICTED not in group:
        return 0
    finished = group[group["status"] == "FINISHED"]
    return int(finished[Tag.NEVER_PREDICTED].fillna("").astype(str).str.len().gt(0).sum())


def display_scale(unit: str) -> float:
    """What a value in ``unit`` is multiplied by for display: fractions are shown as %."""
    return 100.0 if unit == "fraction" else 1.0


def format_value(mean: float, std: float, unit: str) -> str:
    """``mean ± std`` (``mean`` alone for one seed); fractions shown as %."""
    if np.isnan(mean):
        return "n/a"
    scale = display_scale(unit)
    return f"{mean * scale:.2f}" if np.isnan(std) else f"{mean * scale:.2f} ± {std * scale:.2f}"


def paper_table(
    cells: pd.DataFrame, units: dict[str, str], directions: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted table, same-shaped boolean table marking the best cell per label budget and metric); budgets
    largest first, shown in the ``labels`` column."""
    metrics = list(units)
    means = cell_means(cells, metrics).set_index(["budget", "initialisation", "metric"])
    rows, marks = [], []
    for budget in sorted(cells["budget"].dropna().unique(), reverse=True):
        at_budget = means.xs(budget, level="budget") if budget in means.index.get_level_values(0) else None
        best = {}
        if at_budget is not None:
            for metric in metrics:
                values = at_budget.xs(metric, level="metric")["mean"].dropna()
                if len(values):
                    best[metric] = values.min() if directions.get(metric) == "lower" else values.max()
        for label in init_order(cells["initialisation"].dropna()):
            group = cells[(cells["budget"] == budget) & (cells["initialisation"] == label)]
            finished = int((group["status"] == "FINISHED").sum())
            row = {"labels": str(budget), "initialisation": label, "seeds": finished}
            mark = {"labels": False, "initialisation": False, "seeds": False}
            for metric in metrics:
                key = (budget, label, metric)
                if finished == 0 or key not in means.index:
                    row[metric], mark[metric] = "missing", False
                    continue
                mean, std = means.loc[key, ["mean", "std"]]
                row[metric] = format_value(mean, std, units[metric])
                mark[metric] = bool(metric in best and not np.isnan(mean) and np.isclose(mean, best[metric]))
            row["collapsed"] = collapsed_seeds(group)
            row["failed"] = int((group["status"] == "FAILED").sum())
            row["running"] = int((group["status"] == "RUNNING").sum())
            mark["collapsed"] = mark["failed"] = mark["running"] = False
            rows.append(row)
            marks.append(mark)
    return pd.DataFrame(rows), pd.DataFrame(marks)


def to_markdown(table: pd.DataFrame, marks: pd.DataFrame | None = None) -> str:
    """A Markdown table; marked cells in bold."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = []
    for index, row in table.iterrows():
        cells = [
            f"**{value}**" if marks is not None and marks.loc[index, column] else str(value)
            for column, value in row.items()
        ]
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *body])


def to_html(table: pd.DataFrame, marks: pd.DataFrame | None = None) -> str:
    """An HTML table (escaped); marked cells in <b>."""
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in table.columns)
    rows = []
    for index, row in table.iterrows():
        cells = []
        for column, value in row.items():
            text = html.escape(str(value))
            cells.append(
                f"<td><b>{text}</b></td>" if marks is not None and marks.loc[index, column] else f"<td>{text}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
