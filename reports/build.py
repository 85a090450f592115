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

from ssl_medbench.core.file_lock import file_lock
from ssl_medbench.core.run_tags import PROTOCOLS, Artifact, Kind, Param, Protocol, Tag
from ssl_medbench.downstream import DOWNSTREAM_TASKS
from ssl_medbench.reports.agreement import protocol_agreement
from ssl_medbench.reports.critical_difference import NotEnoughBlocks, critical_difference
from ssl_medbench.reports.critical_difference_diagram import plot_critical_difference
from ssl_medbench.reports.document import Document
from ssl_medbench.reports.endpoints import ArmScores, arm_scores
from ssl_medbench.reports.paired import ALPHA, MIN_SEEDS
from ssl_medbench.reports.paper import PAPER_HD95, side_by_side
from ssl_medbench.reports.plots import metric_vs_budget, subject_distributions
from ssl_medbench.reports.runs import (
    cell_tables,
    current_plan,
    download_artifact,
    finetune_runs,
    load_runs,
    select_runs,
    set_apart_table,
)
from ssl_medbench.reports.stats import (
    BASELINE,
    COLUMNS,
    CONTROLS,
    IMAGE_BLIND,
    NEGATIVE_CONTROL,
    POSITIVE_CONTROL,
    compare_to_baseline,
    descriptive,
    primary_comparisons,
)
from ssl_medbench.reports.tables import cell_means, display_scale, format_value, init_order, paper_table


def _recorded(cells: pd.DataFrame, tag: str, task: str) -> dict[str, str]:
    """A JSON mapping the cells recorded as a tag (metrics can depend on the data, e.g. organs), else the plugin's defaults."""
    values = cells[tag].dropna() if tag in cells else []
    if len(values):
        return json.loads(values.iloc[0])
    plugin = DOWNSTREAM_TASKS.get(task)
    defaults = {Tag.METRIC_UNITS: plugin.metric_units_for, Tag.METRIC_DIRECTIONS: plugin.metric_directions_for}
    return defaults[tag]()


def _conventions_note(document: Document, cells: pd.DataFrame) -> None:
    """Under a table: the metric conventions and empty-mask rule the cells recorded (``metric_conventions`` tag)."""
    recorded = cells[Tag.METRIC_CONVENTIONS].dropna().unique() if Tag.METRIC_CONVENTIONS in cells else []
    readings = [json.loads(value) for value in recorded]
    lines = [f"{metric}: {definition}" for reading in readings for metric, definition in reading.items()]
    if len(readings) > 1:
        document.text(f"These cells recorded {len(readings)} different sets of metric conventions:", note=True)
    if lines:
        document.text("Conventions: " + "; ".join(lines) + ".", note=True)


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


#: What each protocol trained, printed under its sections' headings.
PROTOCOL_TEXT = {
    Protocol.FINETUNE: "the whole network trained from the initialisation (Chen et al. 2019's protocol)",
    Protocol.FROZEN: "the encoder frozen (its weights and batch-norm statistics as transferred), the rest of the "
    "network trained; a linear probe on pooled features for a classification task",
    Protocol.KNN: "nothing trained: each test image takes the majority class of its k most cosine-similar labelled "
    "images by the frozen encoder's pooled features",
}


def _section_name(task: str, protocol: str) -> str:
    """A section's name in headings and file names: the task, with the protocol unless it is finetune."""
    return task if protocol == Protocol.FINETUNE else f"{task}_{protocol}"


def _all_neighbours_note(document: Document, cells: pd.DataFrame) -> None:
    """Under a knn section: the label budgets at which a vote took every labelled image (no more of them than k), so
    that every initialisation predicted the labelled majority class."""
    bank, used = (f"params.{name}" for name in (Param.KNN_BANK_IMAGES, Param.KNN_NEIGHBOURS_USED))
    if bank not in cells or used not in cells:
        return
    every = cells[cells[bank].notna() & (cells[bank] == cells[used])]
    if len(every):
        budgets = ", ".join(map(str, sorted(every["budget"].unique())))
        document.text(
            f"At {budgets}, the labelled images were no more than k, so each vote took all of them: every "
            "initialisation predicted their majority class there, whatever its encoder. Give knn.neighbours below the "
            "number of labelled images.",
            note=True,
        )


def _dims(cells: pd.DataFrame) -> str:
    """ "2D" or "3D": whether the cells' networks took images or volumes (runs written before 3D: 2D)."""
    recorded = cells[Tag.SPATIAL_DIMS] if Tag.SPATIAL_DIMS in cells else pd.Series(dtype=object)
    return "/".join(f"{dims}D" for dims in sorted(set(recorded.fillna("2"))) or ["2"])


def _task_section(
    document: Document, task: str, protocol: str, cells: pd.DataFrame, tracking_uri: str, out: Path, scratch: Path
) -> tuple[pd.DataFrame, dict[str, str], pd.DataFrame]:
    """One task under one protocol: its answer first (the primary endpoint against Random), then its table, figures
    and described metrics. Returns the cell means, the metric directions and the controls' primary comparisons."""
    units, directions = _recorded(cells, Tag.METRIC_UNITS, task), _recorded(cells, Tag.METRIC_DIRECTIONS, task)
    name = _section_name(task, protocol)
    dims = _dims(cells)
    shown_task = task if dims == "2D" else f"{task} ({dims})"
    document.heading(shown_task if protocol == Protocol.FINETUNE else f"{shown_task}, protocol {protocol}")
    document.text(f"Protocol {protocol}: {PROTOCOL_TEXT.get(protocol, 'not described')}.")
    _all_neighbours_note(document, cells)
    plugin = DOWNSTREAM_TASKS.get(task)
    scores = _arm_scores(document, plugin, cells, list(units), tracking_uri, scratch)
    primary = plugin.primary_metric
    compared = controls = pd.DataFrame(columns=COLUMNS)
    if primary in units and not scores.contributions.empty and primary in scores.contributions:
        compared, controls = _primary_section(
            document, task, protocol, scores, primary, units[primary], directions[primary], out
        )
        _conventions_note(document, cells)
    else:
        document.text(f"No per-subject scores of the primary endpoint {primary!r} recorded: nothing tested.", note=True)
    table, marks = paper_table(cells, units, directions)
    table.insert(0, "protocol", protocol)
    marks.insert(0, "protocol", False)
    table.insert(0, "dims", dims)
    marks.insert(0, "dims", False)
    table.to_csv(out / "tables" / f"{name}.csv", index=False)
    finished = int((cells["status"] == "FINISHED").sum())
    better = {d: sorted(m for m, dd in directions.items() if dd == d) for d in ("higher", "lower")}
    rule = "; ".join(f"{d} is better for {', '.join(names)}" for d, names in better.items() if names)
    document.text(
        f"{finished} of {len(cells)} cells FINISHED; mean ± std over seeds; bold: best per label budget ({rule}); "
        "labels: the share or number of training subjects labelled; metric fractions in %, distances in mm; "
        "collapsed: seeds whose model predicted some class, region or organ of the test references for no test "
        "subject (averaged in above, counted here)."
    )
    if finished < len(cells):
        document.text(
            f"Not finished: {int((cells['status'] == 'FAILED').sum())} failed, {int((cells['status'] == 'RUNNING').sum())} running; "
            "their cells show 'missing' or fewer seeds.",
            note=True,
        )
    document.table(table, marks)
    _conventions_note(document, cells)
    if finished:
        document.image(
            metric_vs_budget(cells, units, out / "figures" / f"{name}_vs_labels.png"),
            f"{name}: metrics against labelled training subjects (95 % CI over seeds)",
        )
    if not scores.contributions.empty:
        subject_metrics = [m for m in units if m in scores.contributions and m not in scores.whole_set]
        methods = scores.contributions[~scores.contributions["initialisation"].isin(CONTROLS)]
        figure = subject_distributions(
            methods, {m: units[m] for m in subject_metrics}, out / "figures" / f"{name}_per_subject.png"
        )
        if figure is not None:
            document.image(figure, f"{name}: per-subject scores (mean over seeds) per initialisation and label budget")
        _secondary_section(document, name, task, scores, [m for m in units if m != primary], out)
    means = cell_means(cells, list(units)).assign(task=task, protocol=protocol)
    return means, directions, compared, controls


def _arm_scores(
    document: Document, plugin, cells: pd.DataFrame, metrics: list[str], tracking_uri: str, scratch: Path
) -> ArmScores:
    """Every FINISHED cell's per-subject scores, and the image-blind reference scored in the Random cells."""
    tables, missing = cell_tables(tracking_uri, cells, Artifact.PER_SUBJECT_METRICS, scratch)
    random = cells[cells["initialisation"] == BASELINE]
    references, _ = cell_tables(tracking_uri, random, Artifact.IMAGE_BLIND_PER_SUBJECT, scratch)
    arms = [(run, table, run["initialisation"]) for run, table in tables]
    scores = arm_scores(plugin, arms + [(run, table, IMAGE_BLIND) for run, table in references], metrics)
    unread = missing + scores.unreadable
    if unread:
        document.text(
            f"{Artifact.PER_SUBJECT_METRICS} is missing or unreadable for {len(unread)} FINISHED cell(s), so the "
            f"per-subject figures and statistics leave them out: {', '.join(unread)}.",
            note=True,
        )
    return scores


def _shown(comparisons: pd.DataFrame, unit: str, protocol: str | pd.Series) -> pd.DataFrame:
    """The comparison columns a reader needs, rounded; metric fractions in %."""
    scale = display_scale(unit)
    shown = pd.DataFrame(
        {
            "protocol": protocol,
            "labels": comparisons["budget"].map(str),
            "arm": comparisons["arm"],
            "metric": comparisons["metric"],
            "difference": (comparisons["mean_difference"] * scale).round(2),
            "95% CI": [
                f"[{low * scale:.2f}, {high * scale:.2f}]" if pd.notna(low) else "n/a"
                for low, high in zip(comparisons["ci_low"], comparisons["ci_high"])
            ],
            "p": comparisons["p_value"].round(4),
            "p (Holm)": comparisons["p_adjusted"].round(4),
            "seeds": comparisons["n_seeds"],
            "subjects": comparisons["n_subjects"],
            "detectable (80% power)": (comparisons["min_detectable_difference"] * scale).round(2),
        }
    )
    return shown.reset_index(drop=True)


def _better(row: pd.Series, direction: str) -> bool:
    """Whether the row's arm scored better than Random (its difference points the metric's better way)."""
    return (row["mean_difference"] > 0) == (direction == "higher")


def _reading(row: pd.Series, direction: str, unit: str) -> str:
    """One phrase: better or worse than Random after correction, or nothing found and what could have been."""
    if pd.isna(row["p_adjusted"]):
        return "not testable"
    if row["p_adjusted"] < ALPHA:
        return "better than RD" if _better(row, direction) else "worse than RD"
    detectable = row["min_detectable_difference"] * display_scale(unit)
    return f"no difference found (a true one of {detectable:.2f} would be found 80% of the time)"


def _primary_section(
    document: Document,
    task: str,
    protocol: str,
    scores: ArmScores,
    primary: str,
    unit: str,
    direction: str,
    out: Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The primary endpoint of every method against Random (Holm over them); returns the methods' and the
    controls' comparisons."""
    name = _section_name(task, protocol)
    arms = init_order(scores.contributions["initialisation"].unique())
    methods = [arm for arm in arms if arm != BASELINE and arm not in CONTROLS]
    whole = scores.whole_set
    compared = primary_comparisons(compare_to_baseline(task, scores.contributions, [primary], methods, whole))
    compared[COLUMNS].to_csv(out / "tables" / f"{name}_primary.csv", index=False)
    testable = int(compared["p_value"].notna().sum())
    controls = [arm for arm in CONTROLS if arm in arms]
    checked = compare_to_baseline(task, scores.contributions, [primary], controls, whole)
    document.heading(f"{name}: primary endpoint {primary} against Random ({BASELINE})", 3)
    document.text(
        f"{primary} ({'%' if unit == 'fraction' else unit}; {direction} is better). Each method minus {BASELINE}, paired by "
        "seed (same labelled subjects and batch order) and by test subject, over the seeds that finished in both; 95 % "
        "interval and p from a crossed seeds x subjects random-effects model (reports/paired.py); Holm over the "
        f"{testable} testable comparisons of this family (every method at every label budget; controls apart); "
        f"detectable: the true difference this comparison finds with 80 % power at 5 % / {max(testable, 1)}, the "
        f"level of Holm's first step. Fewer than {MIN_SEEDS} seeds in both arms: not testable."
    )
    if compared.empty:
        document.text(f"No method to compare: no {BASELINE} cell finished where another method did.", note=True)
        return compared, checked
    readings = [_reading(row, direction, unit) for _, row in compared.iterrows()]
    shown = _shown(compared, unit, protocol).assign(reading=readings)
    document.table(shown)
    return compared, checked


def _secondary_section(
    document: Document, name: str, task: str, scores: ArmScores, metrics: list[str], out: Path
) -> None:
    """Every other metric against Random with its interval, untested."""
    arms = [arm for arm in init_order(scores.contributions["initialisation"].unique()) if arm != BASELINE]
    scored = [m for m in metrics if m in scores.contributions]
    described = descriptive(compare_to_baseline(task, scores.contributions, scored, arms, scores.whole_set))
    described.to_csv(out / "tables" / f"{name}_secondary.csv", index=False)
    document.heading(f"{name}: other metrics against Random, described", 3)
    document.text(
        "Differences to RD with the same paired 95 % intervals; not tested (no p-values), so an interval that excludes "
        f"zero here is a description, not a finding. The full table: tables/{name}_secondary.csv."
    )


def _paper_section(document: Document, means: pd.DataFrame, units: dict[str, dict[str, str]]) -> None:
    document.heading("Side by side with Chen et al. (2019)")
    document.text(
        "The paper's figures (Tables 3-5) were obtained on the paper's data: private fetal ultrasound and abdominal CT, "
        "and BraTS 2017. Numbers on other data, phantoms included, are not directly comparable; the rows below only "
        "put them next to each other where the grid ran the same task, label fraction, initialisation and metric, "
        "under the paper's protocol (finetune). The paper's ± is over test subjects (classification: none), this "
        "grid's over seeds.",
        note=True,
    )
    rows = []
    comparable = means[(means["protocol"] == Protocol.FINETUNE) & means["budget"].map(lambda b: b.fraction is not None)]
    comparable = comparable.assign(fraction=comparable["budget"].map(lambda b: b.fraction))
    for task, group in comparable.groupby("task"):
        rows.append(side_by_side(group, units[task]))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if table.empty:
        document.text("This grid ran no task, fraction and metric that the paper reports.")
        return
    if table["metric"].str.startswith("hd95").any():
        document.text(
            f"Hausdorff95 is compared as {PAPER_HD95}, the medpy convention (95th percentile of both directed "
            "voxel-surface distance sets pooled) and this suite's default. The paper does not say which tool computed "
            "its Hausdorff95, so its figures may follow another convention; on the same masks the conventions differ "
            "by millimetres (docs/metrics.md).",
            note=True,
        )
    shown = pd.DataFrame(
        {
            "task": table["task"],
            "protocol": Protocol.FINETUNE,
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
    """The answer (each task's best method against Random), one section per downstream task and protocol, the
    controls, the ranks across tasks, the agreement between protocols, the paper comparison, previews, unfinished
    runs, and provenance last."""
    all_means, answers, controls, units, directions = [], [], [], {}, {}
    sections = Document(document.title)
    tasks = sorted(runs.loc[runs[Tag.KIND] == Kind.FINETUNE, Tag.DOWNSTREAM_TASK].dropna().unique())
    for task in tasks:
        task_cells = finetune_runs(runs, task)
        units[task] = _recorded(task_cells, Tag.METRIC_UNITS, task)
        primary = DOWNSTREAM_TASKS.get(task).primary_metric
        for protocol in _ordered(task_cells["protocol"].unique()):
            cells = task_cells[task_cells["protocol"] == protocol]
            means, directions[task], compared, checked = _task_section(
                sections, task, protocol, cells, tracking_uri, out_dir, scratch
            )
            all_means.append(means)
            direction, unit = directions[task].get(primary), units[task].get(primary, "")
            answers.append(compared.assign(protocol=protocol, direction=direction, unit=unit, dims=_dims(cells)))
            controls.append(checked.assign(protocol=protocol, direction=direction, unit=unit))
    _answer_section(document, pd.concat(answers, ignore_index=True) if answers else pd.DataFrame())
    document.blocks.extend(sections.blocks)
    _controls_section(document, pd.concat(controls, ignore_index=True) if controls else pd.DataFrame(), out_dir)
    if all_means:
        means = pd.concat(all_means, ignore_index=True)
        _ranks_section(document, means, directions, out_dir)
        _agreement_section(document, means, directions, out_dir)
        _paper_section(document, means, units)
    _previews(document, runs, tracking_uri, out_dir, scratch)
    _unfinished(document, runs)
    _provenance(document, runs, tracking_uri, scratch)


def _best_rows(compared: pd.DataFrame) -> pd.DataFrame:
    """Per (task, protocol, budget): the method whose difference to Random points furthest the better way."""
    scored = compared.dropna(subset=["mean_difference"])
    signed = scored["mean_difference"].where(scored["direction"] == "higher", -scored["mean_difference"])
    best = scored.assign(_signed=signed).sort_values("_signed", ascending=False, kind="stable")
    return best.drop_duplicates(["task", "protocol", "budget"]).drop(columns="_signed")


def _answer_section(document: Document, compared: pd.DataFrame) -> None:
    """First in the report: per task, protocol and label budget, the best method by the primary endpoint, its
    difference to Random with the 95 % interval, Holm's p and what that means (the sections below have every method)."""
    document.heading("The answer: the best method of each task against Random")
    if compared.empty or compared["mean_difference"].isna().all():
        document.text("No method has been compared with Random yet (no cell of both finished).", note=True)
        return
    best = _best_rows(compared)
    rows = []
    for _, row in best.sort_values(["task", "protocol", "budget"], key=_sort_key).iterrows():
        scale = display_scale(row["unit"])
        interval = f"[{row['ci_low'] * scale:.2f}, {row['ci_high'] * scale:.2f}]" if pd.notna(row["ci_low"]) else "n/a"
        rows.append(
            {
                "task": row["task"],
                "dims": row["dims"],
                "protocol": row["protocol"],
                "labels": str(row["budget"]),
                "primary endpoint": DOWNSTREAM_TASKS.get(row["task"]).primary_metric,
                "best method": row["arm"] if _better(row, row["direction"]) else f"none better than {BASELINE}",
                "its difference to RD": round(row["mean_difference"] * scale, 2),
                "95% CI": interval,
                "p (Holm)": round(row["p_adjusted"], 4) if pd.notna(row["p_adjusted"]) else "n/a",
                "reading": _reading(row, row["direction"], row["unit"]),
            }
        )
    document.text(
        "Per task, evaluation protocol and label budget, the method whose primary endpoint is furthest the better way "
        f"from Random's ({BASELINE}; mean over seeds), with the paired 95 % interval and Holm-adjusted p of its "
        "section; 'none better than RD' where every method is worse. Metric fractions in %, distances in mm."
    )
    document.table(pd.DataFrame(rows))


def _sort_key(column: pd.Series) -> pd.Series:
    """Sort tasks by name, protocols in :data:`PROTOCOLS` order, budgets largest first."""
    if column.name == "protocol":
        return column.map(lambda p: PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS))
    if column.name == "budget":
        order = {budget: -rank for rank, budget in enumerate(sorted(column.unique()))}
        return column.map(order)
    return column


def _ordered(protocols) -> list[str]:
    """``protocols`` in the order of :data:`PROTOCOLS`, unknown ones after."""
    return [p for p in PROTOCOLS if p in set(protocols)] + sorted(set(protocols) - set(PROTOCOLS))


#: What each control must show for the benchmark to be trusted on this data, and at which budgets it is checked.
EXPECTED = {
    NEGATIVE_CONTROL: "no difference from RD",
    POSITIVE_CONTROL: "better than RD at the smallest label budget",
    IMAGE_BLIND: "worse than RD at the largest label budget",
}


def _judged(rows: pd.DataFrame) -> pd.Series:
    """Which rows of one task's and protocol's controls are checks: RD' at every label budget, SUP at the smallest,
    the image-blind reference at the largest (budgets in subjects sort below fractions)."""
    budgets = rows["budget"]
    return (
        (rows["arm"] == NEGATIVE_CONTROL)
        | ((rows["arm"] == POSITIVE_CONTROL) & (budgets == min(budgets)))
        | ((rows["arm"] == IMAGE_BLIND) & (budgets == max(budgets)))
    )


#: What a check that did not show what it must reads as.
UNEXPECTED = {
    NEGATIVE_CONTROL: f"NOT AS EXPECTED: {NEGATIVE_CONTROL} differs from RD",
    POSITIVE_CONTROL: f"NOT AS EXPECTED: {POSITIVE_CONTROL} not found better",
    IMAGE_BLIND: f"NOT AS EXPECTED: {IMAGE_BLIND} not found worse",
}


def _control_verdict(row: pd.Series) -> str:
    """Whether a checked row shows what its control must show; '' for rows that only describe."""
    if not row["judged"]:
        return ""
    if pd.isna(row["p_adjusted"]):
        return "not testable"
    significant, better = row["p_adjusted"] < ALPHA, _better(row, row["direction"])
    shown = {
        NEGATIVE_CONTROL: not significant,
        POSITIVE_CONTROL: significant and better,
        IMAGE_BLIND: significant and not better,
    }[row["arm"]]
    return "as expected" if shown else UNEXPECTED[row["arm"]]


def _task_controls(rows: pd.DataFrame) -> pd.DataFrame:
    """One task's control rows with ``judged``, Holm over the judged rows only (the rest described) and verdicts."""
    judged = _judged(rows)
    tested = primary_comparisons(rows[judged]) if judged.any() else rows[judged]
    described = descriptive(rows[~judged])
    checked = pd.concat([tested, described]).loc[rows.index].assign(judged=judged)
    return checked.assign(verdict=[_control_verdict(row) for _, row in checked.iterrows()])


def _controls_section(document: Document, controls: pd.DataFrame, out: Path) -> None:
    """The controls' primary comparisons against Random, with what each must show; ``tables/controls.csv``."""
    if controls.empty:
        return
    groups = controls.groupby(["task", "protocol"], sort=False)
    checked = pd.concat([_task_controls(rows) for _, rows in groups])
    checked[["protocol", *COLUMNS]].to_csv(out / "tables" / "controls.csv", index=False)
    document.heading("Controls: can this benchmark detect an effect on this data?")
    document.text(
        "Never ranked among the methods. RD' (negative control): Random from an independent weight stream, all else as "
        "RD; it must not differ. SUP (positive control, uses labels): the downstream network pretrained on the labels "
        "of all training subjects, then evaluated like any initialisation; it should be better at the smallest label "
        "budget. "
        "image-blind: the task's reference that never looks at a test image (built from the cell's labelled "
        "subjects, scored in every RD cell); RD at the largest label budget must beat it, or the data leave no "
        "headroom. "
        "Primary endpoint of each task, paired by seed and subject as above; Holm over each task's checks (RD' at "
        "every budget, SUP at the smallest, image-blind at the largest), each protocol apart; the other rows describe. "
        "A null RD' is "
        "not proof of no difference: compare its interval with the detectable difference."
    )
    rows = []
    for (task, protocol), group in checked.groupby(["task", "protocol"], sort=False):
        shown = _shown(group, group["unit"].iloc[0], protocol).assign(task=task, verdict=group["verdict"].values)
        rows.append(shown.assign(expected=group["arm"].map(EXPECTED).where(group["judged"], "").values))
        missing = sorted(set(EXPECTED) - set(group.loc[group["judged"], "arm"]))
        if missing:
            document.text(
                f"{_section_name(task, protocol)}: no check of {', '.join(missing)} (not in this grid or not finished).",
                note=True,
            )
    table = pd.concat(rows, ignore_index=True)
    document.table(table[["task", *[c for c in table.columns if c != "task"]]])


def _ranks_section(document: Document, means: pd.DataFrame, directions: dict[str, dict[str, str]], out: Path) -> None:
    """Friedman + Nemenyi over tasks of each task's primary endpoint, methods only; one analysis per protocol."""
    document.heading("Ranks across tasks")
    for protocol in _ordered(means["protocol"].unique()):
        _protocol_ranks(document, protocol, means[means["protocol"] == protocol], directions, out)


def _primary_metrics(tasks, directions: dict[str, dict[str, str]]) -> dict[str, str]:
    """Each task's primary endpoint, where its cells recorded it."""
    primary = {task: DOWNSTREAM_TASKS.get(task).primary_metric for task in tasks}
    return {task: metric for task, metric in primary.items() if metric in directions[task]}


def _protocol_ranks(
    document: Document, protocol: str, means: pd.DataFrame, directions: dict[str, dict[str, str]], out: Path
) -> None:
    """The rank analysis of one protocol's sections: ``tables/ranks[_<protocol>].csv`` and its diagram."""
    suffix = "" if protocol == Protocol.FINETUNE else f"_{protocol}"
    primary = _primary_metrics(means["task"].unique(), directions)
    values = means[(means["metric"] == means["task"].map(primary)) & ~means["initialisation"].isin(CONTROLS)]
    wide = values.pivot_table(index=["task", "budget"], columns="initialisation", values="mean").dropna()
    if wide.empty:
        document.text(f"Protocol {protocol}: no task has a label budget at which every method finished.", note=True)
        return
    per_task = wide.groupby(level="task").mean().stack().rename("value").reset_index().assign(budget="all")
    try:
        result = critical_difference(per_task, {task: directions[task][metric] for task, metric in primary.items()})
    except NotEnoughBlocks as reason:
        document.text(f"Protocol {protocol}: no rank analysis: {reason}", note=True)
        return
    table = result.average_ranks.rename("average rank").round(2).rename_axis("initialisation").reset_index()
    table.insert(0, "protocol", protocol)
    table.to_csv(out / "tables" / f"ranks{suffix}.csv", index=False)
    document.text(
        f"Protocol {protocol}: average rank (1 = best) of each method over {result.n_blocks} tasks, each task's block "
        "its primary endpoint (mean over seeds) averaged over the label budgets at which every method finished "
        "(budgets of one task share its test set, so they are not independent blocks: counted apart they rejected a "
        "true null about half the time in simulation). "
        f"Friedman chi2 = {result.statistic:.2f}, p = {result.p_value:.4f}; Nemenyi critical difference "
        f"{result.critical_difference:.2f} at alpha {result.alpha:g} (Demšar 2006): methods joined by a bar do not "
        "differ significantly."
    )
    document.table(table)
    figure = plot_critical_difference(result, out / "figures" / f"critical_difference{suffix}.png")
    document.image(figure, f"critical difference, protocol {protocol}")


def _agreement_section(
    document: Document, means: pd.DataFrame, directions: dict[str, dict[str, str]], out: Path
) -> None:
    """Kendall's tau between the protocols' orders of the methods, per task and label budget
    (:mod:`ssl_medbench.reports.agreement`); ``tables/protocol_agreement.csv``."""
    if means["protocol"].nunique() < 2:
        return
    primary = _primary_metrics(means["task"].unique(), directions)
    agreement = protocol_agreement(means, primary, CONTROLS)
    document.heading("Do the protocols rank the methods alike?")
    if agreement.empty:
        document.text("No task and label budget ran two protocols.", note=True)
        return
    agreement.to_csv(out / "tables" / "protocol_agreement.csv", index=False)
    document.text(
        "Kendall's tau-b between two protocols' orders of the methods (controls apart) by the task's primary "
        "endpoint, mean over seeds, at each label budget: 1 the same order, -1 the reverse, 0 unrelated; n/a with "
        "fewer than 3 methods or all alike. A tau well below 1 means the choice of pretext task depends on how it "
        "will be used: read the section of the protocol you will use. p tests tau = 0, not agreement."
    )
    shown = agreement.assign(
        budget=agreement["budget"].map(str),
        kendall_tau=[f"{tau:.2f}" if pd.notna(tau) else "n/a" for tau in agreement["kendall_tau"]],
        p_value=[f"{p:.4f}" if pd.notna(p) else "n/a" for p in agreement["p_value"]],
    ).rename(columns={"budget": "labels", "kendall_tau": "Kendall's tau", "p_value": "p"})
    document.table(shown)


def _header(document: Document, plan: str | None, apart: pd.DataFrame) -> None:
    document.text(f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.")
    if plan:
        document.text(f"Grid plan {plan} (the newest grid run on this experiment): one run counted per job.")
    if len(apart):
        document.text(f"{len(apart)} runs set apart, not counted: see 'Runs set apart' for each and why.", note=True)


def build_report(tracking_uri: str, experiment: str, out_dir: Path) -> Path:
    """Write the report of ``experiment`` into ``out_dir`` (a folder of the run folder); returns the path of ``report.md``.

    Two drivers of one grid may end together: the second waits for the first's report (a lock file beside
    ``out_dir``), then writes its own from the store as it is then."""
    with file_lock(out_dir.with_name(f".{out_dir.name}.lock")):
        return _write_report(tracking_uri, experiment, out_dir)


def _write_report(tracking_uri: str, experiment: str, out_dir: Path) -> Path:
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
