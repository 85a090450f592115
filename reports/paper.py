"""The published numbers of Chen et al. (2019), Tables 3-5, shipped as package data, matched to our metric names.

``data/chen2019_tables.csv`` has one row per (task, fraction, initialisation, structure, metric):
``mean`` and ``std`` in the paper's units (% for overlap and classification metrics, mm for
distances). The paper's data are private (fetal ultrasound, abdominal CT) or BraTS 2017, so the
report labels these as the paper's figures on the paper's data, never as a target for other data.
Where the paper lists two RD rows at 100 % (Baumgartner et al. 2017's result and the paper's own),
the ``note`` column says which is which.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from ssl_medbench.reports.tables import display_scale

#: The HD95 convention of ours that the paper's Hausdorff95 is compared with (the report says why).
PAPER_HD95 = "hd95_medpy_<region>"
#: Paper metric name -> our metric-name pattern (``{structure}`` is the region or organ).
METRIC_NAMES = {
    "dice": "dice_{structure}",
    "sensitivity": "sensitivity_{structure}",
    "specificity": "specificity_{structure}",
    "hd95": "hd95_medpy_{structure}",
    "centroid_distance": "centroid_{structure}",
    "wall_distance": "wall_{structure}",
    # Table 3 compares with SonoNet's figure, averaged over the standard planes without the background class.
    "precision": "precision_anatomical",
    "recall": "recall_anatomical",
    "f1": "f1_anatomical",
}


def paper_tables() -> pd.DataFrame:
    """The tidy reference table, with ``our_metric`` naming the metric as our tasks log it."""
    with resources.files("ssl_medbench.reports").joinpath("data/chen2019_tables.csv").open() as handle:
        table = pd.read_csv(handle, keep_default_na=False, na_values={"std": [""], "mean": [""]})
    table["our_metric"] = [METRIC_NAMES[m].format(structure=s) for m, s in zip(table["metric"], table["structure"])]
    return table


def side_by_side(ours: pd.DataFrame, units: dict[str, str]) -> pd.DataFrame:
    """Rows where our grid ran the paper's task, fraction, initialisation and metric.

    ``ours`` has columns task, fraction, initialisation (label), metric, mean, std (our units:
    fractions as 0..1); the result shows both in the paper's units (fractions as %).
    """
    paper = paper_tables().rename(columns={"init": "initialisation", "mean": "paper_mean", "std": "paper_std"})
    scale = ours["metric"].map(lambda m: display_scale(units.get(m, "")))
    ours = ours.assign(our_mean=ours["mean"] * scale, our_std=ours["std"] * scale)
    merged = paper.merge(
        ours,
        left_on=["task", "fraction", "initialisation", "our_metric"],
        right_on=["task", "fraction", "initialisation", "metric"],
        suffixes=("_paper", ""),
    )
    columns = [
        "task",
        "fraction",
        "initialisation",
        "our_metric",
        "paper_mean",
        "paper_std",
        "our_mean",
        "our_std",
        "unit",
        "note",
    ]
    return merged[columns].rename(columns={"our_metric": "metric"}).reset_index(drop=True)
