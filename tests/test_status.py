"""``python -m benchmark status`` on hand-made stores: counts per kind and task, running and failed jobs, the rerun
command and the time left; and on a real grid's run folder."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from benchmark.cli import main
from benchmark.status import format_status, grid_status, plan_path, read_plan_file
from ssl_medbench.reports.runs import load_runs

EXPERIMENT = "grid-hand"
#: 2026-01-01 12:00 UTC in milliseconds.
NOON = int(datetime(2026, 1, 1, 12, tzinfo=timezone.utc).timestamp() * 1000)
MINUTE = 60_000
COMMAND = "python -m benchmark run --grid hand.yaml --out results"

#: key -> (name, kind, task)
PLAN = {
    "p1": ("pretrain/AE/seed0", "pretrain", ""),
    "p2": ("pretrain/CR/seed0", "pretrain", ""),
    "f1": ("finetune/RD/seg/1/seed0", "finetune", "seg"),
    "f2": ("finetune/AE/seg/1/seed0", "finetune", "seg"),
    "f3": ("finetune/CR/seg/1/seed0", "finetune", "seg"),
    "f4": ("finetune/RD/cls/1/seed0", "finetune", "cls"),
    "f5": ("finetune/AE/cls/1/seed0", "finetune", "cls"),
}


def _run(
    client: MlflowClient,
    experiment: str,
    key: str,
    status: str,
    start: int,
    end: int | None,
    error: str = "",
    heartbeat: float | None = None,
):
    name, kind, task = PLAN[key]
    tags = {"job_key": key, "kind": kind, "mlflow.runName": name} | ({"downstream_task": task} if task else {})
    if heartbeat is not None:  # minutes after noon
        tags |= {"heartbeat": f"{(NOON + heartbeat * MINUTE) / 1000:.3f}", "driver": f"node{key}:7:ab"}
    if error:
        tags["error"] = error
    run = client.create_run(experiment, start_time=NOON + start * MINUTE, tags=tags)
    if end is not None:
        client.set_terminated(run.info.run_id, status, end_time=NOON + end * MINUTE)


def _store(folder: Path, with_plan: bool = True) -> str:
    """p1 finished in 10 min; p2 failed once, then finished in 20; f1 finished in 4 min, f2 in 6; f3 failed
    (FloatingPointError); f4 running since minute 40, its last heartbeat at minute 49.5; f5 not started (no run)."""
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment(EXPERIMENT, artifact_location=str(folder / "artifacts"))
    _run(client, experiment, "p1", "FINISHED", 0, 10)
    _run(client, experiment, "p2", "FAILED", 0, 1, "RuntimeError: CUDA out of memory\ntraceback line")
    _run(client, experiment, "p2", "FINISHED", 2, 22)
    _run(client, experiment, "f1", "FINISHED", 22, 26)
    _run(client, experiment, "f2", "FINISHED", 26, 32)
    _run(client, experiment, "f3", "FAILED", 32, 33, "FloatingPointError: loss became nan at epoch 0")
    _run(client, experiment, "f4", "RUNNING", 40, None, heartbeat=49.5)
    if with_plan:
        path = plan_path(folder, EXPERIMENT)
        path.parent.mkdir(parents=True)
        jobs = [{"key": key, "name": name, "kind": kind, "task": task} for key, (name, kind, task) in PLAN.items()]
        path.write_text(json.dumps({"command": COMMAND, "jobs": jobs}))
    return uri


def test_status_counts_each_kind_and_task_and_names_the_running_and_failed_jobs(tmp_path):
    uri = _store(tmp_path)
    status = grid_status(load_runs(uri, EXPERIMENT), read_plan_file(tmp_path, EXPERIMENT))
    states = dict(zip(status.jobs["key"], status.jobs["state"]))
    assert states == {
        "p1": "finished",
        "p2": "finished",  # a finished run counts over an earlier failed one
        "f1": "finished",
        "f2": "finished",
        "f3": "failed",
        "f4": "running",
        "f5": "not started",
    }
    now = datetime.fromtimestamp((NOON + 50 * MINUTE) / 1000, timezone.utc)
    text = format_status(status, EXPERIMENT, now)
    assert text.splitlines()[0] == "grid-hand: 7 jobs: 4 finished, 1 running, 1 failed, 1 not started"
    table = [line.split() for line in text.splitlines()[2:6]]
    assert table == [
        ["kind", "task", "finished", "running", "failed", "not", "started"],
        ["finetune", "cls", "0", "1", "0", "1"],
        ["finetune", "seg", "2", "0", "1", "0"],
        ["pretrain", "all", "2", "0", "0", "0"],
    ]
    assert "  finetune/RD/cls/1/seed0  for 10 min, heartbeat 30 s ago (driver nodef4:7:ab)" in text
    assert "  finetune/CR/seg/1/seed0: FloatingPointError: loss became nan at epoch 0" in text
    assert f"rerun them (finished jobs are kept): {COMMAND}" in text
    # finetune jobs took 4 and 6 min: 2 still to run (one running, one not started) x 5 min, over 1 running job
    assert "time left: about 10 min (ends around 2026-01-01 13:00 UTC)" in text


def test_a_running_job_whose_driver_died_shows_its_old_heartbeat_and_one_without_claims_says_so(tmp_path):
    uri = _store(tmp_path)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    _run(client, experiment, "f5", "RUNNING", 20, None, heartbeat=25)  # its driver stopped beating at minute 25
    _run(client, experiment, "f3", "RUNNING", 45, None)  # started by a suite without claims: no heartbeat
    now = datetime.fromtimestamp((NOON + 50 * MINUTE) / 1000, timezone.utc)
    text = format_status(grid_status(load_runs(uri, EXPERIMENT), read_plan_file(tmp_path, EXPERIMENT)), EXPERIMENT, now)
    assert text.splitlines()[0] == "grid-hand: 7 jobs: 4 finished, 3 running, 0 failed, 0 not started"
    running = text.split("running:\n")[1].split("\n\n")[0].splitlines()
    assert running == [
        "  finetune/AE/cls/1/seed0  for 30 min, heartbeat 1500 s ago (driver nodef5:7:ab)",
        "  finetune/RD/cls/1/seed0  for 10 min, heartbeat 30 s ago (driver nodef4:7:ab)",
        "  finetune/CR/seg/1/seed0  for 5 min, no heartbeat (a run of a suite without claims)",
    ]


def test_without_a_plan_file_status_shows_the_jobs_the_store_has_seen_and_says_so(tmp_path):
    uri = _store(tmp_path, with_plan=False)
    text = format_status(grid_status(load_runs(uri, EXPERIMENT), None), EXPERIMENT)
    assert text.splitlines()[0] == "grid-hand: 6 jobs: 4 finished, 1 running, 1 failed"
    assert "jobs not started yet are not counted" in text and "rerun them" not in text


def test_the_time_left_is_unknown_until_each_kind_still_to_run_has_finished_a_job(tmp_path):
    uri = _store(tmp_path)
    jobs = grid_status(load_runs(uri, EXPERIMENT), read_plan_file(tmp_path, EXPERIMENT)).jobs
    early = jobs.assign(state=jobs["state"].where(jobs["kind"] == "pretrain", "not started"))
    status = grid_status(pd.DataFrame(), None)
    text = format_status(type(status)(early, True, COMMAND), EXPERIMENT)
    assert "time left: unknown until a job of each kind still to run has finished" in text


def test_status_of_a_grid_run_folder_on_the_command_line(write_grid, tmp_path, capsys):
    """A real run writes its plan file; status then counts every job finished and prints one line per kind and
    task; a broken plan file is one error line."""
    out = tmp_path / "out"
    assert main(["run", "--grid", str(write_grid()), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "grid-tiny: 5 jobs: 5 finished, 0 running, 0 failed, 0 not started"
    assert "every job has ended" in text
    plan = json.loads(plan_path(out, "grid-tiny").read_text())
    assert plan["command"].startswith("python -m benchmark run --grid ") and len(plan["jobs"]) == 5
    plan_path(out, "grid-tiny").write_text("{not json")
    assert main(["status", "--out", str(out)]) == 2
    assert "grid-tiny.json: not a readable plan file" in capsys.readouterr().err
    assert main(["status", "--out", str(tmp_path / "nothing")]) == 2
    assert "no MLflow store (mlflow.db) here" in capsys.readouterr().err
