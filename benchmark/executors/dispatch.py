"""Driver-side bookkeeping shared by every executor: which jobs still have to run, in which order, and what came back.

Jobs whose run is FINISHED in MLflow, with its artifacts present (and pretrained weights matching their
manifest), are skipped and tagged as part of this plan; a FINISHED run that fails that check is marked
superseded and its job rerun, with a one-line note on stderr. Pretrain jobs go first; a finetune cell is ready
when it needs no pretraining or its pretrain job has come back (finished or failed: a cell whose
pretrain job failed runs and fails with that reason, so the report shows it). A job that another driver holds
(:mod:`benchmark.claims`) is set aside and handed out again every ``retry_s`` seconds until that driver has
finished or failed it, or its claim has gone stale and this driver takes it over.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from benchmark.claims import BUSY, JobTaken, examine
from benchmark.planner import FinetuneCell, Plan, PretrainJob
from benchmark.tracking import Tracker, is_tracking_outage, store_lost
from benchmark.worker import Job, JobOutcome, taken_outcome
from ssl_medbench.core.progress import progress_bar

#: A job and the run id of the pretrain job it starts from (None: none, or let the worker look it up).
Dispatchable = tuple[Job, str | None]


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: jobs another driver sharing the store finished while this one ran
    elsewhere: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [
            f"{len(self.finished)} jobs finished, {len(self.skipped)} skipped (finished earlier), "
            + (f"{len(self.elsewhere)} finished by another driver, " if self.elsewhere else "")
            + f"{len(self.failed)} failed"
        ]
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed]
        return lines


def plan_digest(plan: Plan) -> str:
    """The identity of a plan: SHA-256 over its sorted job keys (16 hex digits)."""
    keys = sorted(job.key for job in (*plan.pretrain_jobs, *plan.finetune_cells))
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def reusable_runs(jobs: Sequence[Job], tracker: Tracker, digest: str) -> dict[str, str]:
    """Run ids, by job key, of the FINISHED runs that can be reused, each tagged as part of plan ``digest``.

    A FINISHED run that lacks an artifact, or whose weights do not match their manifest, is marked superseded
    and its job left to run again, with a one-line note on stderr."""
    reusable = {}
    for job in jobs:
        run = tracker.finished_run(job.key)
        if run is None:
            continue
        problem = tracker.reuse_problem(run)
        if problem is None:
            tracker.join_plan(run, digest)
            reusable[job.key] = run.info.run_id
        else:
            tracker.supersede(run.info.run_id, problem)
            print(f"rerunning {job.name}: its FINISHED run {run.info.run_id} {problem}", file=sys.stderr)
    return reusable


def lost_job(job: Job, tracker: Tracker, message: str) -> JobOutcome:
    """The failed outcome of a job whose process died without answering; its run, left RUNNING, is closed as KILLED."""
    if tracker.claims.close_own(job.key):
        tqdm.write(f"{job.name}: its run was left RUNNING by the dead process; closed as KILLED")
    return JobOutcome(job.name, job.key, "failed", message=message)


class Dispatch:
    """Use as a context manager (it owns the grid's progress bar)."""

    def __init__(self, plan: Plan, tracker: Tracker, grid_name: str):
        jobs: list[Job] = [*plan.pretrain_jobs, *plan.finetune_cells]
        digest = plan_digest(plan)
        tracker.start_plan(digest)
        finished = reusable_runs(jobs, tracker, digest)
        if finished:
            print(f"resuming: {len(finished)} of {len(jobs)} jobs already FINISHED will be skipped")
        self.summary = Summary()
        self.jobs = {job.key: job for job in jobs}
        self.claims = tracker.claims
        self.tracking_uri = tracker.tracking_uri
        self.retry_s = tracker.claims.policy.retry_s
        #: jobs another driver holds, with the time (monotonic) to hand them out again
        self.deferred: list[tuple[float, Job]] = []
        self.bar = progress_bar(total=len(jobs), desc=f"grid {grid_name}", unit="job", position=0)
        self.pretrain_jobs: list[PretrainJob] = [job for job in plan.pretrain_jobs if job.key not in finished]
        pending = {job.key for job in self.pretrain_jobs}
        #: cells waiting for a pretrain job of this run, by its key
        self.waiting: dict[str, list[FinetuneCell]] = {}
        self.ready_cells: list[Dispatchable] = []
        for job in jobs:
            if job.key in finished:
                self.summary.skipped.append(job.name)
                tqdm.write(f"skip {job.name}: FINISHED earlier (run {finished[job.key]})")
                self.bar.update(1)
            elif isinstance(job, FinetuneCell):
                if job.pretrain_key in pending:
                    self.waiting.setdefault(job.pretrain_key, []).append(job)
                else:
                    self.ready_cells.append((job, finished.get(job.pretrain_key) if job.pretrain_key else None))
        self.remaining = len(jobs) - len(finished)

    def __enter__(self) -> Dispatch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def first_wave(self) -> list[Dispatchable]:
        """Pretrain jobs to run, then the cells that wait for none of them."""
        return [*((job, None) for job in self.pretrain_jobs), *self.ready_cells]

    def record(self, outcome: JobOutcome) -> list[Dispatchable]:
        """Count ``outcome``; returns the cells it made ready. Raises the grid-ending error of a fatal outcome."""
        if outcome.status == "fatal":
            assert outcome.fatal_error is not None
            raise outcome.fatal_error
        if outcome.status == BUSY:
            self.deferred.append((time.monotonic() + self.retry_s, self.jobs[outcome.key]))
            return []
        if outcome.status == "finished":
            (self.summary.elsewhere if outcome.by else self.summary.finished).append(outcome.name)
        else:
            self.summary.failed.append((outcome.name, outcome.message))
            tqdm.write(f"FAILED {outcome.name}: {outcome.message}")
        self.remaining -= 1
        self.bar.update(1)
        return [(cell, outcome.run_id) for cell in self.waiting.pop(outcome.key, [])]

    def seconds_to_due(self) -> float | None:
        """Seconds until the next set-aside job is due again (0 if one is); None if none is set aside."""
        if not self.deferred:
            return None
        return max(0.0, min(due for due, _ in self.deferred) - time.monotonic())

    def due(self) -> list[Dispatchable]:
        """The set-aside jobs due to be handed out again (their pretrain run is looked up by key), and the cells of
        those another driver has ended since. Each is looked at in the store here first, so that a job still held
        elsewhere costs no worker (nor, on SLURM, a queued task)."""
        now = time.monotonic()
        due = [job for when, job in self.deferred if when <= now]
        self.deferred = [(when, job) for when, job in self.deferred if when > now]
        ready: list[Dispatchable] = []
        for job in due:
            taken = self._taken_elsewhere(job)
            if taken is None:
                ready.append((job, None))
            else:
                ready += self.record(taken_outcome(job, taken, self.claims.policy.driver))
        return ready

    def _taken_elsewhere(self, job: Job) -> JobTaken | None:
        """Why another driver still has ``job`` (busy), or has ended it; None if this driver may claim it."""
        try:
            taken, _ = examine(self.claims.runs(job.key), self.claims.policy, time.time())
        except Exception as error:
            if is_tracking_outage(error):
                raise store_lost(self.tracking_uri, f"a look at {job.name}", error) from None
            raise
        return taken

    def wait_for_due(self) -> list[Dispatchable]:
        """Sleep until a set-aside job is due, and return the due ones (none if none is set aside)."""
        wait = self.seconds_to_due()
        if wait:
            time.sleep(wait)
        return self.due()
