"""The report built from a hand-made MLflow store with known values: table cells, bolding, statistics (against scipy),
the paper comparison, a partial grid, and the HTML rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from ssl_medbench.datasets.splits import LabelBudget
from ssl_medbench.downstream.brats_segmentation import BratsSegmentation
from ssl_medbench.reports.build import build_report
from ssl_medbench.reports.paired import paired_estimate
from ssl_medbench.reports.paper import side_by_side
from ssl_medbench.reports.runs import load_runs
from ssl_medbench.reports.stats import COLUMNS, holm
from ssl_medbench.reports.tables import paper_table

TASK = "abdominal_organ_localisation"
UNITS = {"centroid_liver": "mm", "wall_liver": "mm", "centroid_mean": "mm"}
DIRECTIONS = {"centroid_liver": "lower", "wall_liver": "lower", "centroid_mean": "lower"}
SUBJECTS = [f"s{i}" for i in range(6)]
#: (fraction, label, seed) -> per-subject centroid distances; wall distances are half of them.
CENTROIDS = {
    (1.0, "RD", 0): [7.0, 8.0, 9.0, 6.0, 7.5, 8.5],
    (1.0, "RD", 1): [8.0, 8.0, 10.0, 6.0, 6.5, 9.5],
    (1.0, "RD", 2): [7.5, 9.0, 9.5, 7.0, 7.0, 8.0],
    (1.0, "CR", 0): [5.0, 6.0, 8.0, 5.0, 6.0, 7.0],
    (1.0, "CR", 1): [6.0, 7.0, 7.0, 4.0, 6.0, 8.0],
    (1.0, "CR", 2): [6.5, 7.0, 8.0, 5.0, 5.5, 6.5],
    (1.0, "JS", 0): [9.0, 9.0, 12.0, 7.0, 9.0, 9.0],
    (1.0, "JS", 1): [8.0, 10.0, 11.0, 8.0, 8.0, 10.0],
    (1.0, "JS", 2): [9.5, 10.0, 11.5, 8.0, 8.5, 9.0],
    (0.5, "RD", 0): [12.0, 10.0, 14.0, 9.0, 11.0, 13.0],
    (0.5, "RD", 1): [11.0, 12.0, 13.0, 10.0, 12.0, 12.0],
    (0.5, "RD", 2): [12.5, 11.0, 13.5, 9.5, 11.0, 12.5],
    (0.5, "CR", 0): [9.0, 9.0, 10.0, 8.0, 9.0, 11.0],
    (0.5, "JS", 0): [13.0, 11.0, 15.0, 10.0, 12.0, 14.0],
    (1.0, "RD'", 0): [7.5, 7.5, 9.5, 5.5, 7.0, 9.0],
    (1.0, "RD'", 1): [7.5, 8.5, 9.5, 6.5, 7.0, 9.0],
    (1.0, "RD'", 2): [8.0, 8.5, 9.0, 7.5, 7.0, 8.5],
    (0.5, "RD'", 0): [11.5, 10.5, 13.5, 9.5, 11.5, 12.5],
    (0.5, "RD'", 1): [11.5, 11.5, 13.5, 10.5, 11.5, 12.5],
    (0.5, "RD'", 2): [12.0, 11.5, 13.0, 10.0, 11.5, 12.0],
}
INIT_NAMES = {"RD": "random", "CR": "context_restoration", "JS": "jigsaw", "RD'": "random_control"}
#: The image-blind reference logged by each RD cell: RD's distances plus these (so clearly worse).
REFERENCE_OFFSET = [4.0, 6.0, 5.0, 7.0, 5.5, 6.5]
#: The cell whose model never predicted the liver for any test subject.
COLLAPSED = (1.0, "JS", 1)


def _write_store(out: Path) -> str:
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("grid-hand", artifact_location=str(out / "artifacts"))
    common = {
        "grid": "hand",
        "kind": "finetune",
        "downstream_task": TASK,
        "dataset": "ct",
        "dataset_type": "msd",
        "dataset_sha256": "a" * 64,
        "test_subjects_sha256": "b" * 64,
        "device": "cpu",
        "suite_version": "0.1.0",
        "git_commit": "abc123",
        "metric_units": json.dumps(UNITS),
        "metric_directions": json.dumps(DIRECTIONS),
    }
    for (fraction, label, seed), centroids in CENTROIDS.items():
        tags = common | {
            "label_fraction": f"{fraction:g}",
            "initialisation": INIT_NAMES[label],
            "initialisation_label": label,
            "seed": str(seed),
            "mlflow.runName": f"finetune/{label}/{fraction:g}/seed{seed}",
            "never_predicted": "liver" if (fraction, label, seed) == COLLAPSED else "",
        }
        run = client.create_run(experiment, tags=tags)
        tables = {"per_subject_metrics.csv": _per_subject(centroids)}
        if label == "RD":
            tables["image_blind_per_subject.csv"] = _per_subject(np.add(centroids, REFERENCE_OFFSET))
        for name, table in tables.items():
            path = out / "scratch" / run.info.run_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
            client.log_artifact(run.info.run_id, str(path))
        for metric in UNITS:
            client.log_metric(run.info.run_id, metric, float(tables["per_subject_metrics.csv"][metric].mean()))
        client.set_terminated(run.info.run_id, "FINISHED")
    failed = client.create_run(
        experiment,
        tags=common
        | {
            "label_fraction": "0.5",
            "initialisation": "jigsaw",
            "initialisation_label": "JS",
            "seed": "1",
            "mlflow.runName": "finetune/JS/0.5/seed1",
        },
    )
    client.set_terminated(failed.info.run_id, "FAILED")
    client.create_run(
        experiment,
        tags=common
        | {
            "label_fraction": "0.5",
            "initialisation": "context_restoration",
            "initialisation_label": "CR",
            "seed": "1",
            "mlflow.runName": "finetune/CR/0.5/seed1",
        },
    )
    return uri


def _per_subject(centroids) -> pd.DataFrame:
    """The localisation task's per-subject table for one organ (the liver) at these centroid distances."""
    return pd.DataFrame(
        {
            "subject_id": SUBJECTS,
            "centroid_liver": centroids,
            "wall_liver": np.array(centroids) / 2,
            "detected_liver": 1.0,
            "centroid_mean": centroids,
        }
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store")
    build_report(_write_store(out), "grid-hand", out / "report")
    return out / "report"


def _cell(markdown: str, budget: str, label: str) -> list[str]:
    """The cells of the task table's row after its dimensions and protocol (the table follows the primary comparison,
    whose rows also start with a protocol and a budget)."""
    for line in markdown[markdown.index("cells FINISHED") :].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:4] == ["2D", "finetune", budget, label]:
            return cells[2:]
    raise AssertionError(f"no row {budget} {label}")


def test_table_cells_are_mean_and_std_over_seeds_with_the_best_in_bold(report):
    markdown = (report / "report.md").read_text()
    cr = _cell(markdown, "100%", "CR")
    means = [np.mean(CENTROIDS[(1.0, "CR", s)]) for s in (0, 1, 2)]
    assert cr[3] == f"**{np.mean(means):.2f} ± {np.std(means, ddof=1):.2f}**"  # lowest distance: bold
    rd = _cell(markdown, "100%", "RD")
    rd_means = [np.mean(CENTROIDS[(1.0, "RD", s)]) for s in (0, 1, 2)]
    assert rd[3] == f"{np.mean(rd_means):.2f} ± {np.std(rd_means, ddof=1):.2f}"
    assert _cell(markdown, "50%", "CR")[2:4] == [
        "1",
        f"**{np.mean(CENTROIDS[(0.5, 'CR', 0)]):.2f}**",
    ]  # one seed: no std
    js = _cell(markdown, "50%", "JS")
    assert js[2] == "1" and js[-2:] == ["1", "0"]  # one finished, one failed
    assert _cell(markdown, "100%", "JS")[-3] == "1" and _cell(markdown, "100%", "CR")[-3] == "0"  # collapsed seeds
    assert _cell(markdown, "50%", "CR")[-2:] == ["0", "1"]  # one still running
    assert "Not finished: 1 failed, 1 running" in markdown
    csv = pd.read_csv(report / "tables" / f"{TASK}.csv")
    assert list(csv.columns[:5]) == ["dims", "protocol", "labels", "initialisation", "seeds"]
    assert set(csv["dims"]) == {"2D"}
    assert set(csv["protocol"]) == {"finetune"} and list(csv["initialisation"][:3]) == [
        "RD",
        "JS",
        "CR",
    ]  # the paper's row order


def _differences(fraction: float, label: str, seeds: tuple[int, ...]) -> np.ndarray:
    return np.array([np.subtract(CENTROIDS[(fraction, label, s)], CENTROIDS[(fraction, "RD", s)]) for s in seeds])


def test_primary_endpoint_of_each_method_is_paired_by_seed_and_subject_with_holm_over_the_methods_only(report):
    table = pd.read_csv(report / "tables" / f"{TASK}_primary.csv")
    assert list(table.columns) == COLUMNS
    assert set(table["metric"]) == {"centroid_mean"} and set(table["arm"]) == {"CR", "JS"}  # no control, no RD
    row = table[(table["budget"] == "100%") & (table["arm"] == "CR")].iloc[0]
    expected = paired_estimate(_differences(1.0, "CR", (0, 1, 2)))
    assert (row["n_seeds"], row["n_subjects"]) == (3, 6)
    assert row["mean_difference"] == pytest.approx(expected.mean_difference)
    assert row["p_value"] == pytest.approx(expected.p_value)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high))
    # the family's testable comparisons are CR and JS at 100 %: detectable at Holm's first level, 5 % / 2
    assert row["min_detectable_difference"] == pytest.approx(expected.min_detectable_difference(alpha=0.025))
    half = table[(table["budget"] == "50%") & (table["arm"] == "CR")].iloc[0]
    assert half["n_seeds"] == 1  # CR's seed 1 is still running: only seed 0 is paired, too few to test
    assert half["mean_difference"] == pytest.approx(_differences(0.5, "CR", (0,)).mean())
    assert np.isnan([half["p_value"], half["ci_low"], half["p_adjusted"]]).all()
    tested = table["p_value"].notna()
    assert tested.sum() == 2 and np.allclose(
        table.loc[tested, "p_adjusted"], holm(table.loc[tested, "p_value"].to_numpy())
    )
    markdown = (report / "report.md").read_text()
    assert "primary endpoint centroid_mean against Random" in markdown and "better than RD" in markdown
    secondary = pd.read_csv(report / "tables" / f"{TASK}_secondary.csv")
    assert set(secondary["metric"]) == {"centroid_liver", "wall_liver"} and secondary["p_value"].isna().all()


def test_controls_have_their_own_table_and_family_and_say_whether_they_behaved(report):
    controls = pd.read_csv(report / "tables" / "controls.csv")
    assert list(controls.columns) == ["protocol", *COLUMNS] and set(controls["protocol"]) == {"finetune"}
    assert sorted(set(controls["arm"])) == ["RD'", "image-blind"]
    blind = controls[(controls["arm"] == "image-blind") & (controls["budget"] == "100%")].iloc[0]
    assert blind["mean_difference"] == pytest.approx(np.mean(REFERENCE_OFFSET))
    described = (controls["arm"] == "image-blind") & (controls["budget"] == "50%")  # checked at 100 % only
    assert controls.loc[described, ["p_value", "p_adjusted"]].isna().all(axis=None)
    checks = controls[~described]  # RD' at both fractions, image-blind at 100 %: one Holm family
    assert len(checks) == 3 and np.allclose(checks["p_adjusted"], holm(checks["p_value"].to_numpy()))
    markdown = (report / "report.md").read_text()
    section = markdown[markdown.index("## Controls") :]
    lines = [line for line in section.splitlines() if line.startswith(f"| {TASK} |")]
    assert any("| RD' |" in line and "as expected" in line for line in lines)
    assert any("| image-blind |" in line and "| 100% |" in line and "as expected" in line for line in lines)


def test_holm_by_hand():
    assert np.allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])
    # (3 - 0) * 0.2 = 0.6, then 2 * 0.45 = 0.9, then 1 * 0.7 = 0.7 -> monotone 0.9; a product over 1 is capped at 1
    assert holm(np.array([0.45, 0.2, 0.7])).tolist() == pytest.approx([0.9, 0.6, 0.9])
    assert holm(np.array([0.6, 0.7])).tolist() == [1.0, 1.0]  # 2 * 0.6 = 1.2
    assert np.isnan(holm(np.array([np.nan, 0.02]))[0]) and holm(np.array([np.nan, 0.02]))[1] == pytest.approx(0.02)


def test_paper_numbers_sit_beside_ours_labelled_as_the_papers(report):
    markdown = (report / "report.md").read_text()
    assert "not directly comparable" in markdown
    line = next(
        row for row in markdown.splitlines() if row.startswith(f"| {TASK} | finetune | 100% | RD | centroid_liver")
    )
    rd_means = [np.mean(CENTROIDS[(1.0, "RD", s)]) for s in (0, 1, 2)]
    assert "7.50 ± 5.22" in line and f"{np.mean(rd_means):.2f} ± {np.std(rd_means, ddof=1):.2f}" in line


def test_report_has_provenance_rank_summary_figures_and_unfinished_runs(report):
    markdown = (report / "report.md").read_text()
    assert "git_commit: abc123" in markdown and "a" * 64 in markdown
    assert "| finetune | CPU | 21 |" in markdown  # the running cell has no end time yet
    # one task is one block: no rank analysis across tasks, and the report says why
    assert "## Ranks across tasks" in markdown
    assert "Protocol finetune: no rank analysis: critical-difference analysis needs" in markdown
    assert not (report / "tables" / "ranks.csv").exists()
    assert "## Runs not finished" in markdown and "finetune/JS/0.5/seed1" in markdown
    for figure in (f"{TASK}_vs_labels.png", f"{TASK}_per_subject.png"):
        assert (report / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
        assert f"figures/{figure}" in markdown


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    assert page.count("<table>") >= 5 and page.count('src="data:image/png;base64,') == 2
    assert "<b>" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # no CDN or other network assets


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_renders_in_headless_chromium_with_its_tables_and_images(report, tmp_path):
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = (report / "report.html").resolve().as_uri()
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<table>") >= 5 and dom.count("<img") == 2 and "Side by side with Chen et al. (2019)" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [_chromium(), *flags, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000


def test_a_dice_of_0_85_sits_beside_the_papers_percentages_as_85_also_for_integer_fraction_tags(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("grid-one", artifact_location=str(tmp_path / "artifacts"))
    client.create_run(experiment, tags={"label_fraction": "1", "kind": "finetune"})
    runs = load_runs(uri, "grid-one")
    assert runs["label_fraction"].dtype == np.float64 and runs["label_fraction"].tolist() == [1.0]
    ours = pd.DataFrame(
        {"task": ["brats_segmentation"], "fraction": runs["label_fraction"], "initialisation": ["RD"]}
    ).assign(metric="dice_whole", mean=0.85, std=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns when it merges integer keys with the paper's float fractions
        rows = side_by_side(ours, BratsSegmentation.metric_units_for())
    # a Dice of 0.85 is shown as 85 %, in the paper's unit, beside the paper's 86.56 % (Table 5, RD, 100 %)
    assert rows[["fraction", "metric", "paper_mean", "our_mean", "our_std", "unit"]].values.tolist() == [
        [1.0, "dice_whole", 86.56, 85.0, 1.0, "%"]
    ]


def test_the_best_cell_is_marked_at_the_end_its_direction_names():
    """One higher-is-better and one lower-is-better metric in the same table: each marks its own best."""
    rows = [
        (label, seed, dice, hd95)
        for label, dice, hd95 in (("RD", 0.70, 9.0), ("CR", 0.80, 12.0), ("JS", 0.60, 6.0))
        for seed in (0, 1)
    ]
    cells = pd.DataFrame(
        {
            "status": "FINISHED",
            "budget": LabelBudget.of_fraction(1.0),
            "initialisation": [label for label, *_ in rows],
            "seed": [seed for _, seed, *_ in rows],
            "metrics.dice_whole": [dice for *_, dice, _ in rows],
            "metrics.hd95_whole": [hd95 for *_, hd95 in rows],
        }
    )
    table, marks = paper_table(
        cells, {"dice_whole": "fraction", "hd95_whole": "mm"}, {"dice_whole": "higher", "hd95_whole": "lower"}
    )
    marked = {metric: table.loc[marks[metric], "initialisation"].tolist() for metric in ("dice_whole", "hd95_whole")}
    assert marked == {"dice_whole": ["CR"], "hd95_whole": ["JS"]}
    assert table.set_index("initialisation").loc["CR", "dice_whole"] == "80.00 ± 0.00"


def test_ranks_take_one_block_per_task_averaged_over_the_budgets_every_method_finished(tmp_path):
    from ssl_medbench.reports.build import _ranks_section
    from ssl_medbench.reports.document import Document

    rows = [
        # brats (higher is better): at 100 % CR > RD > JS; at 50 % JS is missing, so only 100 % counts
        ("brats_segmentation", 1.0, {"RD": 0.70, "CR": 0.80, "JS": 0.60, "RD'": 0.99}),
        ("brats_segmentation", 0.5, {"RD": 0.90, "CR": 0.10}),
        # localisation (lower is better): averaged over both fractions RD 10, CR 12, JS 11
        ("abdominal_organ_localisation", 1.0, {"RD": 8.0, "CR": 10.0, "JS": 11.0}),
        ("abdominal_organ_localisation", 0.5, {"RD": 12.0, "CR": 14.0, "JS": 11.0}),
        # fetal (higher): JS > RD > CR
        ("fetal_plane_classification", 1.0, {"RD": 0.6, "CR": 0.5, "JS": 0.7}),
    ]
    primary = {"brats_segmentation": "dice_mean", "abdominal_organ_localisation": "centroid_mean"}
    primary["fetal_plane_classification"] = "f1"
    means = pd.DataFrame(
        [
            {
                "task": task,
                "protocol": "finetune",
                "budget": LabelBudget.of_fraction(fraction),
                "initialisation": arm,
                "metric": primary[task],
                "mean": value,
            }
            for task, fraction, values in rows
            for arm, value in values.items()
        ]
    )
    directions = {
        task: {metric: "lower" if task.startswith("abdominal") else "higher"} for task, metric in primary.items()
    }
    (tmp_path / "figures").mkdir()
    (tmp_path / "tables").mkdir()
    document = Document("ranks")
    _ranks_section(document, means, directions, tmp_path)
    ranks = pd.read_csv(tmp_path / "tables" / "ranks.csv").set_index("initialisation")["average rank"]
    # brats: CR 1, RD 2, JS 3; localisation: RD 1, JS 2, CR 3; fetal: JS 1, RD 2, CR 3
    assert ranks.to_dict() == {"RD": 1.67, "JS": 2.0, "CR": 2.33}  # rounded to 2 decimals in the table
    assert "RD'" not in ranks and "over 3 tasks" in document.markdown(tmp_path)


def test_the_report_opens_with_the_best_method_of_each_task_against_random(report):
    """Before any section: per budget the best method by the primary endpoint (CR; lower distances are better), with
    its paired interval and Holm's p from the primary table."""
    markdown = (report / "report.md").read_text()
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[0] == "## The answer: the best method of each task against Random" and headings[1] == f"## {TASK}"
    primary = pd.read_csv(report / "tables" / f"{TASK}_primary.csv").set_index(["budget", "arm"])
    cr = primary.loc[("100%", "CR")]
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {TASK} | 2D | finetune | 100% |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[4:7] == ["centroid_mean", "CR", f"{round(cr['mean_difference'], 2)}"]
    assert cells[7] == f"[{cr['ci_low']:.2f}, {cr['ci_high']:.2f}]" and cells[-1] == "better than RD"


def test_the_answer_says_when_no_method_beats_random():
    from ssl_medbench.reports.build import _answer_section
    from ssl_medbench.reports.document import Document

    compared = pd.DataFrame(
        {
            "task": "brats_segmentation",
            "protocol": "finetune",
            "budget": LabelBudget.of_fraction(1.0),
            "arm": ["AE", "CR"],
            "mean_difference": [-0.02, -0.01],  # Dice: higher is better, both below Random
            "ci_low": [-0.05, -0.03],
            "ci_high": [0.01, 0.01],
            "p_adjusted": [0.4, 0.6],
            "min_detectable_difference": [0.04, 0.04],
            "direction": "higher",
            "unit": "fraction",
            "dims": "2D",
        }
    )
    document = Document("t")
    _answer_section(document, compared)
    (table, _) = next(value for kind, value in document.blocks if kind == "table")
    assert table[["best method", "its difference to RD", "95% CI"]].values.tolist() == [
        ["none better than RD", -1.0, "[-3.00, 1.00]"]
    ]
