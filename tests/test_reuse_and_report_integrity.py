"""Verified reuse, report integrity and a moved run folder: a FINISHED job is reused only with its artifacts intact;
a report counts one run per job of the newest grid plan and names what it leaves out; artifacts follow the run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from ssl_medbench.networks import EncoderConfig, create_encoder
from ssl_medbench.networks.weights import export_weights, mismatched_weight_files, missing_weight_files
from ssl_medbench.reports.build import build_report
from ssl_medbench.reports.runs import select_runs

GRID = {"initialisations": ["random", "context_restoration"], "fractions": [1.0]}
PRETRAIN = "pretrain/context_restoration/phantom/axial_patches@32/seed0"
TASK = "abdominal_organ_localisation"
UNITS = {"centroid_liver": "mm"}


def _runs(out: Path) -> tuple[MlflowClient, list]:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grid-tiny")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def _run(out: Path, name: str, **tags: str):
    """The newest run called ``name`` whose tags include ``tags``."""
    return next(
        r for r in _runs(out)[1] if r.info.run_name == name and all(r.data.tags.get(k) == v for k, v in tags.items())
    )


def _artifacts(out: Path, run_id: str) -> Path:
    return out / "mlartifacts" / "grid-tiny" / run_id / "artifacts"


def _grid(grid: Path, out: Path, *options: str) -> int:
    return main(["run", "--grid", str(grid), "--out", str(out), "--no-progress", *options])


# --- verified reuse -------------------------------------------------------------------------------------------


def test_weight_files_are_checked_against_their_manifest(tmp_path):
    encoder = create_encoder(EncoderConfig(kwargs={"channels": [8, 16]}), 1)
    export_weights(tmp_path, {"encoder": encoder}, EncoderConfig(kwargs={"channels": [8, 16]}), 1, {})
    assert missing_weight_files(tmp_path) == [] and mismatched_weight_files(tmp_path) == []
    state = torch.load(tmp_path / "encoder.pt")
    torch.save({key: value + 1 for key, value in state.items()}, tmp_path / "encoder.pt")
    assert mismatched_weight_files(tmp_path) == ["encoder.pt"]
    (tmp_path / "encoder.pt").write_bytes(b"truncated")
    assert mismatched_weight_files(tmp_path) == ["encoder.pt"]
    (tmp_path / "encoder.pt").unlink()
    assert missing_weight_files(tmp_path) == ["encoder.pt"]
    (tmp_path / "manifest.json").write_text("{not json")
    assert mismatched_weight_files(tmp_path) == ["manifest.json"]


@pytest.mark.slow
def test_lost_or_changed_weights_rerun_their_pretrain_job_and_new_cells_start_from_the_new_run(
    write_grid, tmp_path, capsys
):
    grid, out = write_grid(**GRID), tmp_path / "out"
    assert _grid(grid, out) == 0
    first = _run(out, PRETRAIN).info.run_id
    weights = _artifacts(out, first) / "weights"
    state = torch.load(weights / "encoder.pt")
    torch.save({key: torch.zeros_like(value) for key, value in state.items()}, weights / "encoder.pt")
    capsys.readouterr()

    assert _grid(grid, out) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == (
        f"rerunning {PRETRAIN}: its FINISHED run {first} has weights that do not match their manifest (encoder.pt)"
    )
    assert "1 jobs finished, 2 skipped" in printed.out
    client = _runs(out)[0]
    assert client.get_run(first).data.tags["superseded"].startswith("has weights that do not match")
    second = next(r for r in _runs(out)[1] if r.info.run_name == PRETRAIN and "superseded" not in r.data.tags)

    (_artifacts(out, second.info.run_id) / "weights" / "decoder.pt").unlink()
    assert _grid(grid, out, "--set", "finetune.epochs=1") == 0  # every cell is new and needs the pretrain job
    printed = capsys.readouterr()
    assert printed.err.strip() == (
        f"rerunning {PRETRAIN}: its FINISHED run {second.info.run_id} lacks weights/decoder.pt"
    )
    assert "3 jobs finished, 0 skipped (finished earlier), 0 failed" in printed.out
    third = next(r for r in _runs(out)[1] if r.info.run_name == PRETRAIN and "superseded" not in r.data.tags)
    cell = _run(out, "finetune/context_restoration/brats_segmentation/1/seed0", superseded=None)
    assert cell.data.tags["pretrain_run_id"] == third.info.run_id and third.info.status == "FINISHED"


@pytest.mark.slow
def test_a_deleted_per_subject_file_is_named_in_the_report_and_its_cell_rerun(write_grid, tmp_path, capsys):
    grid, out = write_grid(**GRID), tmp_path / "out"
    assert _grid(grid, out) == 0
    name = "finetune/random/brats_segmentation/1/seed0"
    stale = _run(out, name).info.run_id
    (_artifacts(out, stale) / "per_subject_metrics.csv").unlink()
    assert main(["report", "--out", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert (
        "per_subject_metrics.csv is missing or unreadable for 1 FINISHED cell(s)" in report
        and f"{name} (run {stale})" in report
    )
    capsys.readouterr()

    assert _grid(grid, out) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == f"rerunning {name}: its FINISHED run {stale} lacks per_subject_metrics.csv"
    assert "1 jobs finished, 2 skipped" in printed.out
    report = (out / "report" / "report.md").read_text()
    assert "is missing or unreadable for" not in report
    assert "## Runs set apart" in report and f"| {stale} | FINISHED | superseded (its job ran again): lacks" in report


# --- report integrity -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_grid_name_with_other_settings_is_listed_apart_never_pooled(write_grid, tmp_path, capsys):
    grid, out = write_grid(**GRID), tmp_path / "out"
    assert _grid(grid, out) == 0
    assert _grid(grid, out, "--set", "finetune.epochs=1") == 0
    for report in (None, ["report", "--out", str(out)]):  # the report written by `run`, then the command
        if report is not None:
            assert main(report) == 0
        markdown = (out / "report" / "report.md").read_text()
        assert "| 100% | RD | 1 |" in markdown and "| 100% | CR | 1 |" in markdown  # one seed, not two
        apart = markdown[markdown.index("## Runs set apart") :]
        assert apart.count("other grid settings: plan") == 2  # the two-epoch cells; the pretrain job is shared
    capsys.readouterr()

    assert _grid(grid, out) == 0  # back to two epochs: every run reused, the one-epoch cells set apart
    assert "0 jobs finished, 3 skipped" in capsys.readouterr().out
    client, runs = _runs(out)
    markdown = (out / "report" / "report.md").read_text()
    one_epoch = [r.info.run_id for r in runs if r.data.params.get("finetune.epochs") == "1"]
    apart = markdown[markdown.index("## Runs set apart") :]
    assert len(one_epoch) == 2 and all(f"| {run} | FINISHED | other grid settings" in apart for run in one_epoch)
    assert "| 100% | RD | 1 |" in markdown and "| finetune | CPU | 2 |" in markdown


def _hand_store(out: Path) -> tuple[str, MlflowClient, str]:
    uri = f"sqlite:///{out / 'mlflow.db'}"
    client = MlflowClient(uri)
    return uri, client, client.create_experiment("grid-hand", artifact_location=str(out / "artifacts"))


def _cell(client: MlflowClient, experiment: str, out: Path, key: str, label: str, start: int, **options) -> str:
    """A FINISHED finetune run of job ``key`` with per-subject distances ``options['values']`` (default 5, 6, 7)."""
    values = options.get("values", [5.0, 6.0, 7.0])
    tags = {
        "grid": "hand",
        "kind": "finetune",
        "job_key": key,
        "downstream_task": TASK,
        "dataset": "ct",
        "dataset_type": "msd",
        "dataset_sha256": "a" * 64,
        "test_subjects_sha256": "b" * 64,
        "device": "cpu",
        "label_fraction": "1",
        "initialisation": {"RD": "random", "CR": "context_restoration"}[label],
        "initialisation_label": label,
        "seed": "0",
        "metric_units": json.dumps(UNITS),
        "metric_directions": json.dumps({"centroid_liver": "lower"}),
        "mlflow.runName": f"finetune/{label}/1/seed0",
    }
    plan = options.get("plan")
    run = client.create_run(experiment, start_time=start, tags=tags | ({"plan_digest": plan} if plan else {}))
    if options.get("csv", True):
        path = out / "scratch" / run.info.run_id / "per_subject_metrics.csv"
        path.parent.mkdir(parents=True)
        table = pd.DataFrame({"subject_id": ["a", "b", "c"], "centroid_liver": values, "missed_liver": 0})
        path.write_text(options.get("csv_text", table.to_csv(index=False)))
        client.log_artifact(run.info.run_id, str(path))
    client.log_metric(run.info.run_id, "centroid_liver", float(np.mean(values)))
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 1000)
    return run.info.run_id


def _row(markdown: str, label: str) -> list[str]:
    """The task table's row of ``label`` at 100 %, after its dimensions and protocol columns."""
    line = next(line for line in markdown.splitlines() if line.startswith(f"| 2D | finetune | 100% | {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")][2:]


def test_two_runs_of_one_job_key_are_counted_once_the_newest(tmp_path):
    uri, client, experiment = _hand_store(tmp_path)
    older = _cell(client, experiment, tmp_path, "rd", "RD", 1_000, values=[1.0, 1.0, 1.0])
    _cell(client, experiment, tmp_path, "rd", "RD", 2_000, values=[5.0, 6.0, 7.0])
    _cell(client, experiment, tmp_path, "cr", "CR", 3_000, values=[4.0, 5.0, 6.0])
    build_report(uri, "grid-hand", tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert _row(markdown, "RD")[2:4] == ["1", "6.00"]
    assert (
        "1 runs set apart" in markdown and f"| {older} | FINISHED | another run of the same job is counted" in markdown
    )


def test_runs_of_another_plan_under_the_same_grid_name_are_listed_apart(tmp_path):
    uri, client, experiment = _hand_store(tmp_path)
    old = [_cell(client, experiment, tmp_path, f"old-{label}", label, 1_000, plan="A" * 16) for label in ("RD", "CR")]
    _cell(client, experiment, tmp_path, "new-rd", "RD", 2_000, plan="B" * 16, values=[7.0, 8.0, 9.0])
    _cell(client, experiment, tmp_path, "new-cr", "CR", 2_000, plan="B" * 16, values=[6.0, 7.0, 8.0])
    client.set_experiment_tag(experiment, "plan_digest", "B" * 16)
    build_report(uri, "grid-hand", tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert _row(markdown, "RD")[2:4] == ["1", "8.00"] and _row(markdown, "CR")[2:4] == ["1", "**7.00**"]
    assert f"Grid plan {'B' * 16}" in markdown
    for run in old:
        assert (
            f"| {run} | FINISHED | other grid settings: plan {'A' * 16}, not the newest plan {'B' * 16} |" in markdown
        )


def test_a_missing_per_subject_file_is_named(tmp_path):
    uri, client, experiment = _hand_store(tmp_path)
    _cell(client, experiment, tmp_path, "rd", "RD", 1_000)
    lost = _cell(client, experiment, tmp_path, "cr", "CR", 1_000, csv=False)
    build_report(uri, "grid-hand", tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "per_subject_metrics.csv is missing or unreadable for 1 FINISHED cell(s)" in markdown
    assert f"finetune/CR/1/seed0 (run {lost})" in markdown


@pytest.mark.parametrize("text", ["", "foo,bar\n1,2\n"], ids=["empty", "other columns"])
def test_an_unreadable_per_subject_file_is_named_not_a_crash(tmp_path, text):
    uri, client, experiment = _hand_store(tmp_path)
    _cell(client, experiment, tmp_path, "rd", "RD", 1_000)
    broken = _cell(client, experiment, tmp_path, "cr", "CR", 1_000, csv_text=text)
    build_report(uri, "grid-hand", tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "per_subject_metrics.csv is missing or unreadable for 1 FINISHED cell(s)" in markdown
    assert f"finetune/CR/1/seed0 (run {broken}; unreadable:" in markdown


def test_a_superseded_run_is_not_counted_even_when_it_is_the_only_finished_one():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "status": ["FINISHED", "FAILED", "FINISHED"],
            "start_time": pd.to_datetime([1, 2, 3], unit="s"),
            "job_key": ["k", "k", "other"],
            "superseded": ["lacks weights/encoder.pt", None, None],
        }
    )
    counted, apart = select_runs(runs, None)
    assert list(counted["run_id"]) == ["b", "c"]
    assert apart.set_index("run_id")["reason"].to_dict() == {
        "a": "superseded (its job ran again): lacks weights/encoder.pt"
    }


# --- containment ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_moved_run_folder_resumes_and_reports_inside_its_new_location(write_grid, tmp_path, capsys):
    grid, old, new = write_grid(**GRID), tmp_path / "old", tmp_path / "new"
    assert _grid(grid, old) == 0
    shutil.move(old, new)
    capsys.readouterr()

    assert main(["report", "--out", str(new)]) == 0
    err = capsys.readouterr().err.strip()
    assert err == (
        f"note: the run folder was moved or copied from {old.resolve()} to {new.resolve()}; "
        f"experiment 'grid-tiny' now keeps its artifacts in {new.resolve() / 'mlartifacts' / 'grid-tiny'}"
    )
    markdown = (new / "report" / "report.md").read_text()
    assert (
        "| 100% | CR | 1 |" in markdown
        and "is missing or unreadable for" not in markdown
        and "set apart" not in markdown
    )

    assert _grid(grid, new, "--set", "finetune.epochs=1") == 0  # new cells write artifacts and read the weights
    printed = capsys.readouterr()
    assert printed.err == "" and "2 jobs finished, 1 skipped" in printed.out
    assert not old.exists()
    client, runs = _runs(new)
    assert all(run.info.artifact_uri.startswith(new.resolve().as_uri() + "/") for run in runs)
    assert len(list((new / "mlartifacts" / "grid-tiny").iterdir())) == 5


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "has an unreadable per_subject_metrics.csv (EmptyDataError)"), ("foo,bar\n", "without per-subject rows")],
    ids=["emptied", "other columns"],
)
def test_a_broken_per_subject_file_is_not_trusted(write_grid, tmp_path, capsys, text, problem):
    grid, out = write_grid(**GRID), tmp_path / "out"
    assert _grid(grid, out) == 0
    name = "finetune/random/brats_segmentation/1/seed0"
    stale = _run(out, name).info.run_id
    (_artifacts(out, stale) / "per_subject_metrics.csv").write_text(text)
    capsys.readouterr()
    assert _grid(grid, out) == 0
    printed = capsys.readouterr()
    assert printed.err.strip().startswith(f"rerunning {name}: its FINISHED run {stale} ") and problem in printed.err
    assert "1 jobs finished, 2 skipped" in printed.out
