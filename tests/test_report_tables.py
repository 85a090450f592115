"""The report's result tables and the paper comparison on small hand-made inputs: cell statistics over seeds (against
numpy), the cell text, the row order and ``missing`` cells of a partial grid, the Markdown and HTML renderings, and
our numbers beside the paper's in the paper's units."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.reports.paper import paper_tables, side_by_side
from ssl_medbench.reports.tables import cell_means, format_value, paper_table, to_html, to_markdown

MEANS_COLUMNS = ["budget", "initialisation", "metric", "mean", "std", "seeds"]
UNITS = {"dice_whole": "fraction", "hd95_whole": "mm"}
DIRECTIONS = {"dice_whole": "higher", "hd95_whole": "lower"}


def _cells(rows: list[tuple]) -> pd.DataFrame:
    """Runs as (fraction, initialisation, seed, status, dice, hd95); NaN where the run logged no value."""
    cells = pd.DataFrame(
        rows, columns=["budget", "initialisation", "seed", "status", "metrics.dice_whole", "metrics.hd95_whole"]
    )
    return cells.assign(budget=cells["budget"].map(LabelBudget.of_fraction))


def test_cell_means_are_sample_mean_and_std_over_the_finished_seeds_that_logged_the_metric() -> None:
    """Failed runs and unlogged values are left out; ``seeds`` counts the values; one seed has no std."""
    cells = pd.DataFrame(
        {
            "budget": [LabelBudget.of_fraction(1.0)] * 6,
            "initialisation": ["RD", "RD", "RD", "RD", "RD", "CR"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED", "FINISHED", "FINISHED"],
            "metrics.dice_whole": [0.6, 0.7, 0.9, 0.1, np.nan, 0.8],
        }
    )
    means = cell_means(cells, ["dice_whole", "hd95_whole"])
    assert list(means.columns) == MEANS_COLUMNS
    rows = means.set_index(["initialisation", "metric"])
    rd = rows.loc[("RD", "dice_whole")]
    assert np.isclose(rd["mean"], np.mean([0.6, 0.7, 0.9])) and np.isclose(rd["std"], np.std([0.6, 0.7, 0.9], ddof=1))
    assert rd["seeds"] == 3
    cr = rows.loc[("CR", "dice_whole")]
    assert np.isclose(cr["mean"], 0.8) and np.isnan(cr["std"]) and cr["seeds"] == 1
    for label in ("RD", "CR"):  # a metric no run logged
        unlogged = rows.loc[(label, "hd95_whole")]
        assert np.isnan(unlogged["mean"]) and np.isnan(unlogged["std"]) and unlogged["seeds"] == 0


def test_a_grid_with_no_finished_run_has_no_means_and_every_cell_missing() -> None:
    """All runs failed or running: the means table is empty but keeps its columns; the paper table says ``missing``."""
    cells = _cells([(1.0, "RD", 0, "FAILED", np.nan, np.nan), (1.0, "CR", 0, "RUNNING", np.nan, np.nan)])
    means = cell_means(cells, list(UNITS))
    assert means.empty and list(means.columns) == MEANS_COLUMNS
    table, marks = paper_table(cells, UNITS, DIRECTIONS)
    assert table[["initialisation", "dice_whole", "hd95_whole", "failed", "running"]].values.tolist() == [
        ["RD", "missing", "missing", 1, 0],
        ["CR", "missing", "missing", 0, 1],
    ]
    assert not marks.to_numpy().any()


def test_format_value_shows_fractions_as_percent_with_two_decimals() -> None:
    """``mean ± std`` in the metric's display unit (fractions x 100); the mean alone without a std; n/a without a mean."""
    assert format_value(0.85, np.nan, "fraction") == "85.00"
    assert format_value(0.85, 0.0125, "fraction") == "85.00 ± 1.25"
    assert format_value(7.5, 0.5, "mm") == "7.50 ± 0.50"
    assert format_value(np.nan, np.nan, "fraction") == "n/a"


def test_paper_table_of_a_partial_grid() -> None:
    """Fractions from 100 % down, the paper's row order, ``missing`` for cells without a FINISHED run, ``n/a`` for a
    finished cell that logged no value, the failed and running counts, and the best cell per fraction marked."""
    cells = _cells(
        [
            (0.25, "CR", 0, "FAILED", np.nan, np.nan),
            (0.25, "RD", 0, "FAILED", np.nan, np.nan),
            (0.5, "CR", 0, "RUNNING", np.nan, np.nan),
            (0.5, "RD", 0, "FINISHED", 0.70, 15.0),
            (1.0, "CR", 0, "FINISHED", 0.86, np.nan),
            (1.0, "CR", 1, "FAILED", np.nan, np.nan),
            (1.0, "RD", 0, "FINISHED", 0.80, 10.0),
            (1.0, "RD", 1, "FINISHED", 0.84, 12.0),
        ]
    )
    cells["never_predicted"] = ["", "", "", "", "", "", "et", ""]  # a FINISHED RD seed at 100 % never predicted ET
    cells.loc[1, "never_predicted"] = "tc"  # a FAILED cell's tag does not count
    table, marks = paper_table(cells, UNITS, DIRECTIONS)
    columns = ["labels", "initialisation", "seeds", "dice_whole", "hd95_whole", "collapsed", "failed", "running"]
    # RD at 100 %: dice 0.80 and 0.84 -> 82 % ± 2.83 % (sample std 0.04 / sqrt 2); hd95 10 and 12 -> 11 ± 1.41 mm
    expected = pd.DataFrame(
        [
            ["100%", "RD", 2, "82.00 ± 2.83", "11.00 ± 1.41", 1, 0, 0],
            ["100%", "CR", 1, "86.00", "n/a", 0, 1, 0],
            ["50%", "RD", 1, "70.00", "15.00", 0, 0, 0],
            ["50%", "CR", 0, "missing", "missing", 0, 0, 1],
            ["25%", "RD", 0, "missing", "missing", 0, 1, 0],
            ["25%", "CR", 0, "missing", "missing", 0, 1, 0],
        ],
        columns=columns,
    )
    pd.testing.assert_frame_equal(table, expected)
    assert list(marks.columns) == columns and marks.shape == table.shape
    assert all(pd.api.types.is_bool_dtype(dtype) for dtype in marks.dtypes)  # a boolean mask, usable to index the table
    marked = {metric: table.loc[marks[metric], ["labels", "initialisation"]].values.tolist() for metric in UNITS}
    # 100 %: CR has the higher Dice, RD the only (so lowest) hd95; 50 %: RD is the only finished cell
    assert marked == {"dice_whole": [["100%", "CR"], ["50%", "RD"]], "hd95_whole": [["100%", "RD"], ["50%", "RD"]]}


def test_markdown_table_bolds_the_marked_cells() -> None:
    """Header, rule and one row per table row; only marked cells in bold."""
    table = pd.DataFrame({"initialisation": ["RD", "CR"], "dice": ["82.00 ± 2.83", "86.00"]})
    marks = pd.DataFrame({"initialisation": [False, False], "dice": [False, True]})
    assert to_markdown(table, marks) == (
        "| initialisation | dice |\n|---|---|\n| RD | 82.00 ± 2.83 |\n| CR | **86.00** |"
    )
    assert to_markdown(table) == "| initialisation | dice |\n|---|---|\n| RD | 82.00 ± 2.83 |\n| CR | 86.00 |"


def test_html_table_escapes_text_and_bolds_the_marked_cells() -> None:
    """Header cells and body cells are HTML-escaped; only marked cells in <b>; one <tr> per row."""
    table = pd.DataFrame({"init": ["RD", "A<B"], "p & q": ["1", "2"]})
    marks = pd.DataFrame({"init": [False, False], "p & q": [False, True]})
    head = "<thead><tr><th>init</th><th>p &amp; q</th></tr></thead>"
    assert to_html(table, marks) == (
        f"<table>{head}<tbody><tr><td>RD</td><td>1</td></tr><tr><td>A&lt;B</td><td><b>2</b></td></tr></tbody></table>"
    )
    assert to_html(table) == (
        f"<table>{head}<tbody><tr><td>RD</td><td>1</td></tr><tr><td>A&lt;B</td><td>2</td></tr></tbody></table>"
    )


def test_paper_reference_table_reads_empty_notes_as_empty_text_and_empty_stds_as_missing() -> None:
    """The ``note`` column is text ("" where the paper's row has none); ``std`` is a number, missing where the paper
    gives none (Table 3's classification rows)."""
    table = paper_tables()
    assert table["note"].map(type).eq(str).all()
    assert set(table["note"]) == {"", "Baumgartner et al. 2017"}
    assert pd.api.types.is_float_dtype(table["mean"]) and table["mean"].notna().all()
    classification = table["task"] == "fetal_plane_classification"
    assert pd.api.types.is_float_dtype(table["std"]) and table.loc[classification, "std"].isna().all()
    assert table.loc[table["task"] == "abdominal_organ_localisation", "std"].notna().all()


def test_side_by_side_puts_fractions_in_percent_and_keeps_distances_in_mm() -> None:
    """Only rows the paper reports; our fractions x 100, our millimetres unchanged; both paper rows where it has two."""
    ours = pd.DataFrame(
        {
            "task": ["abdominal_organ_localisation", "abdominal_organ_localisation", "fetal_plane_classification"],
            "fraction": [1.0, 0.3, 1.0],
            "initialisation": ["RD", "RD", "RD"],
            "metric": ["centroid_liver", "centroid_liver", "f1_anatomical"],
            "mean": [7.0, 8.0, 0.9],
            "std": [0.5, 0.6, 0.02],
            "seeds": [2, 2, 2],
        }
    )
    rows = side_by_side(ours, {"centroid_liver": "mm", "f1_anatomical": "fraction"})
    columns = [
        "task",
        "fraction",
        "initialisation",
        "metric",
        "paper_mean",
        "paper_std",
        "our_mean",
        "our_std",
        "unit",
        "note",
    ]
    # Table 4 (liver, RD, 100 %): 7.5 ± 5.22 mm; Table 3 (RD, 100 %): F1 82.8 (Baumgartner et al. 2017) and 89.42
    expected = pd.DataFrame(
        [
            ["abdominal_organ_localisation", 1.0, "RD", "centroid_liver", 7.5, 5.22, 7.0, 0.5, "mm", ""],
            [
                "fetal_plane_classification",
                1.0,
                "RD",
                "f1_anatomical",
                82.8,
                np.nan,
                90.0,
                2.0,
                "%",
                "Baumgartner et al. 2017",
            ],
            ["fetal_plane_classification", 1.0, "RD", "f1_anatomical", 89.42, np.nan, 90.0, 2.0, "%", ""],
        ],
        columns=columns,
    )
    assert list(rows.columns) == columns
    shown = rows.sort_values(["task", "paper_mean"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(shown, expected)


def test_the_papers_hausdorff95_is_compared_with_the_medpy_convention_that_brats_logs_by_default() -> None:
    paper = paper_tables()
    ours = paper.loc[paper["metric"] == "hd95", "our_metric"].unique()
    assert sorted(ours) == ["hd95_medpy_core", "hd95_medpy_enhancing", "hd95_medpy_whole"]
    assert set(ours) <= set(BratsSegmentation.metric_specs())


def test_finetune_runs_order_budgets_by_the_subjects_they_labelled():
    """The runs' ``labelled_subjects`` parameter sizes each budget, also for a run that failed before logging it."""
    from ssl_medbench.reports.runs import finetune_runs

    runs = pd.DataFrame(
        {
            "kind": "finetune",
            "downstream_task": "t",
            "label_fraction": [0.1, 0.1, None, 1.0],
            "label_subjects": [None, None, "5", None],
            "params.labelled_subjects": ["2", None, "5", "24"],
            "initialisation_label": "RD",
            "seed": "0",
            "status": ["FINISHED", "FAILED", "FINISHED", "FINISHED"],
        }
    )
    budgets = finetune_runs(runs, "t")["budget"]
    assert [b.labelled for b in budgets] == [2, 2, 5, 24]
    assert [str(b) for b in sorted(budgets.unique())] == ["10%", "5 subjects", "100%"]
    assert set(finetune_runs(runs, "t")["protocol"]) == {"finetune"}  # runs from before protocols
