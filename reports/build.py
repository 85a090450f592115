"""Write a grid's report: ``report.md``, a self-contained ``report.html``, ``figures/*.png`` and ``tables/*.csv``.

Everything is read back from MLflow (runs, tags, metrics, per-subject CSVs, preview images), so a
report can be rebuilt at any time, also while a grid is still running or after some cells failed.
It counts one run per job of the newest grid plan run on the experiment (the newest FINISHED run of
each job key); runs of other settings under the same grid name, superseded runs and earlier runs of a
counted job are listed apart with the reason, never pooled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ssl_medbench.core.run_tags import Artifact, Kind, Tag
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.reports.document import Document
from ssl_medbench.reports.paper import side_by_side
from ssl_medbench.reports.plots import metric_vs_fraction, subject_distributions
from ssl_medbench.reports.runs import (
    current_plan,
    download_artifact,
    finetune_runs,
    load_runs,
    select_runs,
    set_apart_table,
    subject_scores,
)
from ssl_medbench.reports.stats import BASELINE, BOOTSTRAP_SAMPLES, compare_to_baseline, rank_summary
from ssl_medbench.reports.tables import cell_means, format_value, init_order, paper_table


def _recorded(cells: pd.DataFrame, tag: str, task: str) -> dict[str, str]:
    """A JSON mapping the cells recorded as a tag (metrics can depend on the data, e.g. organs), else the plugin's defaults."""
    values = cells[tag].dropna() if tag in cells else []
    if len(values):
        return json.loads(values.iloc[0])
    plugin = DOWNSTREAM_TASKS.get(task)
    defaults = {Tag.METRIC_UNITS: plugin.metric_units_for, Tag.METRIC_DIRECTIONS: plugin.metric_directions_for}
    return defaults[tag]()


def _hours(runs: pd.DataFrame) -> pd.DataFrame:
    """Summed run durations per job kind and device type (CPU or GPU hours)."""
    timed = runs.dropna(subset=["start_time", "end_time"])
    if timed.empty:
        return pd.DataFrame(columns=["job kind", "device", "jobs", "hours"])
    duration = (pd.to_datetime(timed["end_time"]) - pd.to_datetime(timed["start_time"])).dt.total_seconds() / 3600
    device = timed[Tag.DEVICE].fillna("cpu").map(lambda d: "GPU" if str(d).startswith("cuda") else "CPU")
    table = pd.DataFrame({"job kind": timed[Tag.KIND], "device": device, "hours": duration})
    return (
        table.groupby(["job kind", "device"], as_index=False)
        .agg(jobs=("hours", "size"), hours=("hours", "sum"))
        .round({"hours": 4})
    )


def pretrain_sharing(runs: pd.DataFrame) -> str | None:
    """How many pretrain jobs finished, against initialisations-with-pretraining x dataset views x seeds, and how
    many finetune cells started from them (None if no pretrain job finished)."""
    finished = runs[runs["status"] == "FINISHED"]
    pretrain = finished[finished[Tag.KIND] == Kind.PRETRAIN]
    if pretrain.empty:
        return None
    views = pretrain[[Tag.DATASET, Tag.PRETEXT_VIEW]] if Tag.PRETEXT_VIEW in pretrain else pretrain[[Tag.DATASET]]
    inits, seeds = (pretrain[column].nunique() for column in (Tag.INITIALISATION, Tag.SEED))
    dataset_views = len(views.fillna("").drop_duplicates())
    jobs = pretrain[Tag.JOB_KEY].nunique()
    finetune = finished[finished[Tag.KIND] == Kind.FINETUNE]
    cells = int(finetune[Tag.PRETRAIN_KEY].isin(set(pretrain[Tag.JOB_KEY])).sum())
    return (
        f"{jobs} pretrain jobs ({inits} initialisations with pretraining x {dataset_views} dataset views x {seeds} "
        f"seeds = {inits * dataset_views * seeds}), each shared by the finetune cells that take its view of its "
        f"dataset: {cells} cells started from them."
    )


def input_views(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and downstream task: the input shape the task trained on, and the view and input shape its
    pretraining sampled (one row per combination found in the runs)."""
    columns = [Tag.DATASET, Tag.DOWNSTREAM_TASK, Tag.DOWNSTREAM_INPUT_SHAPE, Tag.PRETEXT_VIEW, Tag.PRETEXT_INPUT_SHAPE]
    if Tag.KIND not in runs or Tag.DOWNSTREAM_INPUT_SHAPE not in runs:
        return pd.DataFrame(columns=columns)
    finetune = runs[runs[Tag.KIND] == Kind.FINETUNE].drop(columns=columns[3:], errors="ignore")
    finished = runs[(runs[Tag.KIND] == Kind.PRETRAIN) & (runs["status"] == "FINISHED")]
    pretrain = finished.reindex(columns=[Tag.JOB_KEY, *columns[3:]])
    pretrain_view = pretrain.drop_duplicates(Tag.JOB_KEY).set_index(Tag.JOB_KEY)
    joined = finetune.join(pretrain_view, on=Tag.PRETRAIN_KEY)
    table = joined.reindex(columns=columns).fillna({Tag.PRETEXT_VIEW: "(no pretraining)", Tag.PRETEXT_INPUT_SHAPE: ""})
    return table.dropna(subset=[Tag.DOWNSTREAM_INPUT_SHAPE]).drop_duplicates().sort_values(columns[:2])


def _provenance(document: Document, runs: pd.DataFrame, tracking_uri: str, scratch: Path) -> None:
    document.heading("What produced these numbers")
    grid = ", ".join(sorted(runs[Tag.GRID].dropna().unique())) if Tag.GRID in runs else "unknown"
    started, ended = pd.to_datetime(runs["start_time"]).min(), pd.to_datetime(runs["end_time"]).max()
    versions = {
        key: ", ".join(sorted(runs[key].dropna().unique()))
        for key in (
            Tag.SUITE_VERSION,
            Tag.GIT_COMMIT,
            Tag.TORCH_VERSION,
            Tag.TIMM_VERSION,
            Tag.PYTHON_VERSION,
            Tag.DEVICE,
        )
        if key in runs
    }
    document.text(
        f"Grid {grid}; {len(runs)} runs from {started:%Y-%m-%d %H:%M} to {ended:%Y-%m-%d %H:%M} UTC "
        f"(wall time {(ended - started).total_seconds() / 60:.1f} min); MLflow store {tracking_uri}."
    )
    document.text("; ".join(f"{key}: {value}" for key, value in versions.items()))
    datasets = (
        runs[[Tag.DATASET, Tag.DATASET_TYPE, Tag.DATASET_SHA256, Tag.TEST_SUBJECTS_SHA256]].dropna().drop_duplicates()
        if Tag.DATASET in runs
        else pd.DataFrame()
    )
    document.table(datasets.reset_index(drop=True))
    views = input_views(runs)
    if len(views):
        document.text("What the networks saw: each downstream task's input and the view its pretraining sampled.")
        document.table(views.reset_index(drop=True))
    document.table(_hours(runs))
    sharing = pretrain_sharing(runs)
    if sharing is not None:
        document.text(sharing)
    config = download_artifact(tracking_uri, runs.iloc[0]["run_id"], Artifact.RESOLVED_CONFIG, scratch)
    if config is not None:
        document.code(config.read_text(), "resolved grid and job configuration (first run)")


def _task_section(
    document: Document, task: str, cells: pd.DataFrame, tracking_uri: str, out: Path, scratch: Path
) -> tuple[pd.DataFrame, dict[str, str]]:
    units, directions = _recorded(cells, Tag.METRIC_UNITS, task), _recorded(cells, Tag.METRIC_DIRECTIONS, task)
    document.heading(task)
    table, marks = paper_table(cells, units, directions)
    table.to_csv(out / "tables" / f"{task}.csv", index=False)
    finished = int((cells["status"] == "FINISHED").sum())
    better = {d: sorted(m for m, dd in directions.items() if dd == d) for d in ("higher", "lower")}
    rule = "; ".join(f"{d} is better for {', '.join(names)}" for d, names in better.items() if names)
    document.text(
        f"{finished} of {len(cells)} cells FINISHED; mean ± std over seeds; bold: best per label fraction ({rule}); "
        "fractions in %, distances in mm."
    )
    if finished < len(cells):
        document.text(
            f"Not finished: {int((cells['status'] == 'FAILED').sum())} failed, {int((cells['status'] == 'RUNNING').sum())} running; "
            "their cells show 'missing' or fewer seeds.",
            note=True,
        )
    document.table(table, marks)
    if finished:
        document.image(
            metric_vs_fraction(cells, units, out / "figures" / f"{task}_vs_fraction.png"),
            f"{task}: metrics against label fraction (95 % CI over seeds)",
        )
    plugin = DOWNSTREAM_TASKS.get(task)
    scores, missing = subject_scores(
        tracking_uri, cells, lambda table: plugin.subject_scores(table, list(units)), scratch
    )
    if missing:
        document.text(
            f"{Artifact.PER_SUBJECT_METRICS} is missing or unreadable for {len(missing)} FINISHED cell(s), so the per-subject "
            f"figures and statistics leave them out: {', '.join(missing)}.",
            note=True,
        )
    if not scores.empty:
        figure = subject_distributions(
            scores, {m: u for m, u in units.items() if m in scores}, out / "figures" / f"{task}_per_subject.png"
        )
        if figure is not None:
            document.image(
                figure, f"{task}: per-subject scores (mean over seeds) per initialisation and label fraction"
            )
        _statistics(document, task, scores, [m for m in units if m in scores], out)
    means = cell_means(cells, list(units)).assign(task=task)
    return means, directions


def _statistics(document: Document, task: str, scores: pd.DataFrame, metrics: list[str], out: Path) -> None:
    comparison = compare_to_baseline(scores, metrics)
    comparison.to_csv(out / "tables" / f"{task}_vs_random.csv", index=False)
    document.heading(f"{task}: each initialisation against Random ({BASELINE})", 3)
    subjects = scores["subject_id"].nunique()
    document.text(
        f"Paired over {subjects} test subjects (each subject's score averaged over the seeds that finished); "
        f"mean difference with a percentile bootstrap 95 % CI ({BOOTSTRAP_SAMPLES} resamples); two-sided Wilcoxon "
        f"signed-rank test; Holm correction over the {len(comparison)} comparisons of this table."
    )
    if comparison.empty:
        document.text(
            f"No comparison: no {BASELINE} cell finished at a fraction where another initialisation did.", note=True
        )
        return
    shown = comparison.assign(fraction=comparison["fraction"].map(lambda f: f"{f * 100:g}%"))
    shown = shown.round({"mean_difference": 4, "ci_low": 4, "ci_high": 4, "p_value": 4, "p_holm": 4})
    document.table(shown.reset_index(drop=True))


def _paper_section(document: Document, means: pd.DataFrame, units: dict[str, dict[str, str]]) -> None:
    document.heading("Side by side with Chen et al. (2019)")
    document.text(
        "The paper's figures (Tables 3-5) were obtained on the paper's data: private fetal ultrasound and abdominal CT, "
        "and BraTS 2017. Numbers on other data, phantoms included, are not directly comparable; the rows below only "
        "put them next to each other where the grid ran the same task, label fraction, initialisation and metric. The paper's "
        "± is over test subjects (classification: none), this grid's over seeds.",
        note=True,
    )
    rows = []
    for task, group in means.groupby("task"):
        rows.append(side_by_side(group, units[task]))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if table.empty:
        document.text("This grid ran no task, fraction and metric that the paper reports.")
        return
    shown = pd.DataFrame(
        {
            "task": table["task"],
            "fraction": table["fraction"].map(lambda f: f"{f * 100:g}%"),
            "initialisation": table["initialisation"],
            "metric": table["metric"],
            "unit": table["unit"],
            "paper (its data)": [format_value(m, s, "") for m, s in zip(table["paper_mean"], table["paper_std"])],
            "this grid": [format_value(m, s, "") for m, s in zip(table["our_mean"], table["our_std"])],
            "note": table["note"],
        }
    )
    document.table(shown)


def _previews(document: Document, runs: pd.DataFrame, tracking_uri: str, out: Path, scratch: Path) -> None:
    if Tag.KIND not in runs:
        return
    pretrain = runs[(runs[Tag.KIND] == Kind.PRETRAIN) & (runs["status"] == "FINISHED")]
    if pretrain.empty:
        return
    document.heading("What pretraining learnt: preview images")
    document.text(
        "Logged by each pretrain job after training: inputs, their corruption and the network's output "
        "(restorations, or true and predicted classes for relative position and jigsaw)."
    )
    for _, run in pretrain.sort_values([Tag.DATASET, Tag.INITIALISATION]).iterrows():
        path = download_artifact(tracking_uri, run["run_id"], Artifact.PREVIEW, scratch)
        if path is not None:
            init, dataset, seed = run[Tag.INITIALISATION], run[Tag.DATASET], run[Tag.SEED]
            target = out / "figures" / f"preview_{init}_{dataset}_seed{seed}.png"
            shutil.copyfile(path, target)
            document.image(target, f"{init} on {dataset} (seed {seed})")


def _set_apart(document: Document, apart: pd.DataFrame) -> None:
    """The runs not counted, each with the reason."""
    if apart.empty:
        return
    document.heading("Runs set apart")
    document.text(
        "Not counted above: runs of other settings under the same grid name (another grid plan: other data, "
        "settings or grid file), FINISHED runs superseded because their artifacts were lost, and earlier runs of a "
        "job whose newest FINISHED run is counted."
    )
    document.table(set_apart_table(apart))


def _results(document: Document, runs: pd.DataFrame, tracking_uri: str, out_dir: Path, scratch: Path) -> None:
    """Provenance, one section per downstream task, the rank summary, the paper comparison, previews, unfinished runs."""
    _provenance(document, runs, tracking_uri, scratch)
    all_means, units, directions = [], {}, {}
    tasks = sorted(runs.loc[runs[Tag.KIND] == Kind.FINETUNE, Tag.DOWNSTREAM_TASK].dropna().unique())
    for task in tasks:
        cells = finetune_runs(runs, task)
        means, directions[task] = _task_section(document, task, cells, tracking_uri, out_dir, scratch)
        units[task] = _recorded(cells, Tag.METRIC_UNITS, task)
        all_means.append(means)
    if all_means:
        means = pd.concat(all_means, ignore_index=True)
        ranks = rank_summary(means, directions)
        if not ranks.empty:
            document.heading("Rank summary across tasks")
            document.text(
                "Mean rank of each initialisation (1 = best) over the metrics and label fractions of each task, by the mean over seeds."
            )
            ranks = ranks.reindex([label for label in init_order(ranks.index)]).round(2).reset_index()
            ranks.to_csv(out_dir / "tables" / "rank_summary.csv", index=False)
            document.table(ranks)
        _paper_section(document, means, units)
    _previews(document, runs, tracking_uri, out_dir, scratch)
    _unfinished(document, runs)


def _header(document: Document, plan: str | None, apart: pd.DataFrame) -> None:
    document.text(f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    if plan:
        document.text(f"Grid plan {plan} (the newest grid run on this experiment): one run counted per job.")
    if len(apart):
        document.text(f"{len(apart)} runs set apart, not counted: see 'Runs set apart' for each and why.", note=True)


def build_report(tracking_uri: str, experiment: str, out_dir: Path) -> Path:
    """Write the report of ``experiment`` into ``out_dir`` (a folder of the run folder); returns the path of ``report.md``."""
    plan = current_plan(tracking_uri, experiment)
    runs, apart = select_runs(load_runs(tracking_uri, experiment), plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("figures", "tables"):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
        (out_dir / folder).mkdir()
    document = Document(f"Report: {experiment}")
    _header(document, plan, apart)
    with tempfile.TemporaryDirectory() as scratch:
        if runs.empty or Tag.KIND not in runs:
            document.text("No runs recorded yet." if plan is None else "No runs of the newest grid plan recorded yet.")
        else:
            _results(document, runs, tracking_uri, out_dir, Path(scratch))
    _set_apart(document, apart)
    (out_dir / "report.html").write_text(document.html())
    path = out_dir / "report.md"
    path.write_text(document.markdown(out_dir))
    return path


def _unfinished(document: Document, runs: pd.DataFrame) -> None:
    unfinished = runs[runs["status"] != "FINISHED"]
    if len(unfinished):
        document.heading("Runs not finished")
        names = unfinished.get("tags.mlflow.runName", unfinished.get("mlflow.runName", unfinished["run_id"]))
        document.table(pd.DataFrame({"run": names.values, "status": unfinished["status"].values}))
