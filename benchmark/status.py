"""``python -m benchmark status``: how far a grid is, what failed, and when it may end.

Every ``run`` writes its plan (each job's key, name, kind and task, and the command that ran it) to
``<out>/plans/<experiment>.json``. ``status`` reads the experiment's runs in one query of the store and matches them
to the plan by job key: a job is *finished* if a run of its key finished, else *running* or *failed* after its newest
run, else *not started*. A running job shows how long ago its claim's heartbeat came (:mod:`benchmark.claims`): one
older than the claim timeout (``run --claim-timeout``, 10 minutes by default) belongs to a dead driver, and the next
driver takes the job over. Without the plan file (a store read through ``--tracking-uri`` from elsewhere) it shows the
jobs the store has seen, and says that it cannot count the ones not started. The time left is the mean duration of
the finished jobs of each kind times the jobs of that kind still to run, divided by the jobs running now (at least
one): a rough figure that assumes the running parallelism holds.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.errors import UserError
from ssl_medbench.core.run_tags import Kind, Tag

if TYPE_CHECKING:  # the planner imports torch and every plugin: seconds that status does without
    from benchmark.planner import Plan

#: Job states, in the order status shows them.
STATES = ("finished", "running", "failed", "not started")
#: Run statuses that count as failed (an interrupted run is KILLED).
FAILED_STATUSES = ("FAILED", "KILLED")


def plan_path(out: Path, experiment: str) -> Path:
    return out / "plans" / f"{experiment}.json"


def write_plan_file(out: Path, experiment: str, plan: Plan, command: list[str]) -> Path:
    """Record ``plan``'s jobs and the ``command`` that runs them for :func:`grid_status`."""
    jobs = [
        {"key": job.key, "name": job.name, "kind": Kind.PRETRAIN, "task": job.downstream_task or ""}
        for job in plan.pretrain_jobs
    ]
    jobs += [
        {"key": cell.key, "name": cell.name, "kind": Kind.FINETUNE, "task": cell.downstream_task}
        for cell in plan.finetune_cells
    ]
    path = plan_path(out, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps({"command": shlex.join(command), "jobs": jobs}, indent=1))
    return path


def read_plan_file(out: Path, experiment: str) -> dict | None:
    """The plan file of ``experiment`` in ``out``, or None if there is none; UserError if it cannot be read."""
    path = plan_path(out, experiment)
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text())
        if not isinstance(plan.get("jobs"), list):
            raise ValueError("no job list")
        return plan
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"{path}: not a readable plan file ({error}); run the grid again to rewrite it") from None


@dataclass(frozen=True)
class GridStatus:
    """One row per job: ``key``, ``name``, ``kind``, ``task``, ``state``, ``started``, ``ended``, ``error``."""

    jobs: pd.DataFrame
    #: Whether the jobs not started are known (a plan file was read).
    planned: bool
    #: The command that runs (and resumes) the grid, from the plan file.
    command: str | None


def grid_status(runs: pd.DataFrame, plan: dict | None) -> GridStatus:
    """Each planned job's state from the experiment's ``runs`` (:func:`ssl_medbench.reports.runs.load_runs`)."""
    latest = _latest_run_per_key(runs)
    if plan is not None:
        jobs = pd.DataFrame(plan["jobs"], columns=["key", "name", "kind", "task"])
        jobs = jobs.join(latest.drop(columns=["name", "kind", "task"], errors="ignore"), on="key")
        jobs["state"] = jobs["state"].fillna("not started")
    else:
        jobs = latest.reset_index()
    return GridStatus(jobs, plan is not None, plan.get("command") if plan else None)


def _latest_run_per_key(runs: pd.DataFrame) -> pd.DataFrame:
    """Per job key: its state (finished if any run finished, else after the newest run), times, error and names."""
    columns = ["name", "kind", "task", "state", "started", "ended", "error", "heartbeat", "driver"]
    if runs.empty or Tag.JOB_KEY not in runs:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="key"))
    table = pd.DataFrame(
        {
            "key": runs[Tag.JOB_KEY],
            "name": runs.get("mlflow.runName", runs["run_id"]),
            "kind": runs.get(Tag.KIND),
            "task": runs.get(Tag.DOWNSTREAM_TASK, pd.Series("", index=runs.index)).fillna(""),
            "status": runs["status"],
            "started": pd.to_datetime(runs["start_time"], utc=True),
            "ended": pd.to_datetime(runs["end_time"], utc=True),
            "error": runs.get(Tag.ERROR, pd.Series("", index=runs.index)).fillna(""),
            "heartbeat": pd.to_datetime(
                pd.to_numeric(runs.get(Tag.HEARTBEAT, pd.Series(None, index=runs.index)), errors="coerce"),
                unit="s",
                utc=True,
            ),
            "driver": runs.get(Tag.DRIVER, pd.Series("", index=runs.index)).fillna(""),
        }
    ).dropna(subset=["key"])
    table["finished"] = table["status"] == "FINISHED"
    ranked = table.sort_values(["finished", "started"], ascending=[False, False])
    latest = ranked.drop_duplicates("key").set_index("key")
    latest["state"] = latest["status"].map(
        lambda status: "finished" if status == "FINISHED" else "failed" if status in FAILED_STATUSES else "running"
    )
    latest["error"] = latest["error"].map(lambda text: text.splitlines()[0] if text else "")
    return latest[columns]


def counts(status: GridStatus) -> pd.DataFrame:
    """Jobs per (kind, task) and state; pretrain jobs of no task (pretext tasks) under task ``all``."""
    jobs = status.jobs.assign(task=status.jobs["task"].replace("", "all"))
    table = pd.crosstab([jobs["kind"], jobs["task"]], jobs["state"])
    shown = [state for state in STATES if status.planned or state != "not started"]
    return table.reindex(columns=shown, fill_value=0).reset_index()


def time_left(status: GridStatus) -> pd.Timedelta | None:
    """Mean finished duration per kind x jobs of that kind still to run, over the jobs running now (at least one);
    None if some kind still to run has no finished job yet."""
    jobs = status.jobs
    finished = jobs[jobs["state"] == "finished"]
    durations = (finished["ended"] - finished["started"]).groupby(finished["kind"]).mean()
    remaining = jobs[jobs["state"].isin(["running", "not started"])].groupby("kind").size()
    if any(kind not in durations or pd.isna(durations[kind]) for kind in remaining.index):
        return None
    total = sum((durations[kind] * count for kind, count in remaining.items()), pd.Timedelta(0))
    return total / max(1, int((jobs["state"] == "running").sum()))


def format_status(status: GridStatus, experiment: str, now: datetime | None = None) -> str:
    """The status as text: counts per kind and task, running and failed jobs, time left."""
    now = now or datetime.now(timezone.utc)
    jobs = status.jobs
    total = {state: int((jobs["state"] == state).sum()) for state in STATES}
    lines = [
        f"{experiment}: {len(jobs)} jobs: "
        + ", ".join(f"{total[state]} {state}" for state in STATES if status.planned or state != "not started")
    ]
    if not status.planned:
        lines.append("  (no plan file here: jobs not started yet are not counted; pass --out of the run folder)")
    lines += ["", counts(status).to_string(index=False)]
    running = jobs[jobs["state"] == "running"].sort_values("started")
    if len(running):
        lines += ["", "running:"]
        lines += [
            f"  {row['name']}  for {_minutes(now - row['started'])}{_claim(row, now)}" for _, row in running.iterrows()
        ]
    failed = jobs[jobs["state"] == "failed"]
    if len(failed):
        lines += ["", "failed:"]
        lines += [f"  {row['name']}: {row['error'] or '(no error recorded)'}" for _, row in failed.iterrows()]
        if status.command:
            lines.append(f"  rerun them (finished jobs are kept): {status.command}")
    left = time_left(status)
    if total["running"] + total["not started"] == 0:
        lines += ["", "every job has ended"]
    elif left is None:
        lines += ["", "time left: unknown until a job of each kind still to run has finished"]
    else:
        lines += ["", f"time left: about {_minutes(left)} (ends around {now + left:%Y-%m-%d %H:%M} UTC)"]
    return "\n".join(lines)


def _claim(row: pd.Series, now: datetime) -> str:
    """``, heartbeat 12 s ago (driver host:pid:id)`` of a running job's claim; a run without one says so."""
    if pd.isna(row["heartbeat"]):
        return ", no heartbeat (a run of a suite without claims)"
    seconds = max(0.0, (now - row["heartbeat"]).total_seconds())
    return f", heartbeat {seconds:.0f} s ago (driver {row['driver'] or 'unknown'})"


def _minutes(delta: pd.Timedelta) -> str:
    minutes = max(0.0, delta.total_seconds() / 60)
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
