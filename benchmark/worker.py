"""The one job function that every executor runs, in this process or in a worker on another machine.

A worker gets a :class:`WorkerSetup` (the grid, the run folder, the tracking URI: all it needs to
rebuild the run context) and a job; it returns a :class:`JobOutcome` and never raises, so that each
executor reports failures the same way. A full disk or a lost tracking store is a *fatal* outcome:
the driver ends the grid, since every later job would fail the same way. A job whose claim another
driver holds comes back *busy* (:mod:`benchmark.claims`): the driver tries it again later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.claims import BUSY, FINISHED, ClaimPolicy, JobTaken
from benchmark.grid import GridConfig
from benchmark.jobs import RunContext, run_finetune, run_pretrain
from benchmark.planner import FinetuneCell, PretrainJob
from benchmark.tracking import is_tracking_outage, store_lost
from ssl_medbench.core.errors import StorageError, UserError

Job = PretrainJob | FinetuneCell


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to rebuild the run context; picklable, and the same for every job of a grid."""

    grid: GridConfig
    out: Path
    tracking_uri: str
    device: str = "auto"
    deterministic: bool = False
    progress: bool = False
    #: torch intra-op threads per job (None: torch's default, all cores). CPU results can differ in the last bits
    #: between thread counts (reductions are split differently), so executors that must agree use the same count.
    threads: int | None = None
    #: The driver's claim identity and timeout, shared by all its workers (None: a driver of its own).
    claim_policy: ClaimPolicy | None = None


@dataclass(frozen=True)
class JobOutcome:
    name: str
    key: str
    #: "finished", "failed", "fatal", or "busy": another driver holds the job's claim; try it again later
    status: str
    run_id: str | None = None
    message: str = ""
    #: for a fatal outcome: the error that ends the grid
    fatal_error: UserError | None = None
    #: the other driver that finished or failed the job ("": this one)
    by: str = ""


def _storage_error(error: BaseException | None) -> StorageError | None:
    """The StorageError (disk full, unwritable file) behind ``error``, if any."""
    while error is not None:
        if isinstance(error, StorageError):
            return error
        error = error.__cause__ or error.__context__
    return None


def run_job(ctx: RunContext, job: Job, pretrain_run_id: str | None = None) -> JobOutcome:
    """Run one pretrain job or finetune cell; a cell without ``pretrain_run_id`` looks its pretrain run up by key."""
    try:
        if isinstance(job, PretrainJob):
            run_id = run_pretrain(job, ctx)
        else:
            if job.pretrain_key and pretrain_run_id is None:
                found = ctx.tracker.finished_run(job.pretrain_key)
                pretrain_run_id = found.info.run_id if found is not None else None
            run_id = run_finetune(job, ctx, pretrain_run_id)
    except JobTaken as taken:
        return taken_outcome(job, taken, ctx.tracker.claims.policy.driver)
    except Exception as error:
        storage = _storage_error(error)
        if storage is not None:
            return JobOutcome(job.name, job.key, "fatal", message=str(storage), fatal_error=StorageError(str(storage)))
        if is_tracking_outage(error):
            lost = store_lost(ctx.tracker.tracking_uri, job.name, error)
            return JobOutcome(job.name, job.key, "fatal", message=str(lost), fatal_error=lost)
        return JobOutcome(job.name, job.key, "failed", message=f"{type(error).__name__}: {error}")
    return JobOutcome(job.name, job.key, "finished", run_id=run_id)


def taken_outcome(job: Job, taken: JobTaken, driver: str) -> JobOutcome:
    """The outcome of a job another driver holds (busy), or has finished or failed since this driver started; one
    this ``driver`` ended itself (a retried task whose first attempt ended the run) counts as its own."""
    if taken.state == BUSY:
        return JobOutcome(job.name, job.key, BUSY, message=str(taken))
    by = "" if taken.driver == driver else taken.driver
    if taken.state == FINISHED:
        return JobOutcome(job.name, job.key, "finished", run_id=taken.run_id, by=by)
    message = f"failed in driver {taken.driver}: {taken.error or '(no error recorded)'}"
    return JobOutcome(job.name, job.key, "failed", message=message, by=by)


_context: tuple[WorkerSetup, RunContext] | None = None


def worker_context(setup: WorkerSetup) -> RunContext:
    """The run context of ``setup``, built once per worker process: device, datasets (already prepared by the
    driver; here only re-indexed), tracking store."""
    global _context
    if _context is not None and _context[0] == setup:
        return _context[1]
    from benchmark.device import choose_device, set_deterministic
    from benchmark.tracking import Tracker, experiment_name
    from ssl_medbench.core.progress import enable_progress
    from ssl_medbench.datasets import DATASETS

    enable_progress(setup.progress)
    set_deterministic(setup.deterministic)
    grid = setup.grid
    datasets = {
        name: DATASETS.get(grid.dataset_type(name))(grid.dataset_config(name), setup.out) for name in grid.datasets
    }
    for name in sorted({grid.downstream_config(task).dataset for task in grid.downstream_tasks}):
        datasets[name].prepare()
    tracker = Tracker(
        setup.tracking_uri,
        experiment_name(grid.name),
        artifact_root=setup.out / "mlartifacts",
        claim_policy=setup.claim_policy,
    )
    ctx = RunContext(
        grid=grid,
        device=choose_device(setup.device),
        tracker=tracker,
        datasets=datasets,
        checkpoint_dir=setup.out / "checkpoints",
        deterministic=setup.deterministic,
    )
    _context = (setup, ctx)
    return ctx


def run_job_in_worker(setup: WorkerSetup, job: Job, pretrain_run_id: str | None = None) -> JobOutcome:
    """:func:`run_job` in a worker process: builds (once) the context from ``setup``; never raises."""
    if setup.threads is not None:
        torch.set_num_threads(setup.threads)
    try:
        ctx = worker_context(setup)
    except UserError as error:
        return JobOutcome(job.name, job.key, "fatal", message=str(error), fatal_error=error)
    except Exception as error:
        return JobOutcome(job.name, job.key, "failed", message=f"worker setup failed: {type(error).__name__}: {error}")
    return run_job(ctx, job, pretrain_run_id)
