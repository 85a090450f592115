"""Tables in the shape of Chen et al. (2019)'s Tables 3-5: rows label fraction x initialisation, cells mean ± std over seeds."""

from __future__ import annotations

import pandas as pd

#: The paper's row order; other initialisations follow alphabetically.
PAPER_ORDER = ("RD", "RD+AG", "AE", "RP", "JS", "CP", "CR")


def _init_order(labels: list[str]) -> list[str]:
    known = [label for label in PAPER_ORDER if label in labels]
    return known + sorted(set(labels) - set(known))


def format_cell(values: pd.Series, unit: str) -> str:
    """``mean ± std`` over seeds (``mean`` alone for one seed); fractions shown as %."""
    values = values.dropna().astype(float) * (100.0 if unit == "fraction" else 1.0)
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def summary_table(runs: pd.DataFrame, task: str, metric_units: dict[str, str]) -> pd.DataFrame:
    """Rows (fraction, initialisation) from FINISHED finetune runs of ``task``; columns its metrics plus seed counts."""
    cells = runs[(runs["kind"] == "finetune") & (runs["downstream_task"] == task)]
    rows = []
    for fraction in sorted(cells["label_fraction"].unique(), reverse=True):
        at_fraction = cells[cells["label_fraction"] == fraction]
        for label in _init_order(list(at_fraction["initialisation_label"].unique())):
            group = at_fraction[at_fraction["initialisation_label"] == label]
            finished = group[group["status"] == "FINISHED"]
            failed = group[group["status"] == "FAILED"]
            row = {"fraction": f"{fraction * 100:g}%", "initialisation": label, "seeds": len(finished)}
            for metric, unit in metric_units.items():
                column = f"metrics.{metric}"
                row[metric] = format_cell(finished[column], unit) if column in finished else "n/a"
            row["failed"] = len(failed)
            rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])

