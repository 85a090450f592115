"""Run a plan's jobs in dependency order in this process, skipping finished ones and surviving failures.

A job that raises is recorded as FAILED and the grid goes on; a full disk or a lost tracking store
ends the grid with one clear error instead, since every later job would fail the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from benchmark.progress import progress_bar

from benchmark.errors import StorageError, TrackingUnavailable
from benchmark.jobs import RunContext, run_finetune, run_pretrain
from benchmark.tracking import describe_error, is_tracking_outage
from benchmark.planner import Plan


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"{len(self.finished)} jobs finished, {len(self.skipped)} skipped (finished earlier), {len(self.failed)} failed"]
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed]
        return lines


def _storage_error(error: BaseException | None) -> StorageError | None:
    """The StorageError (disk full, unwritable file) behind ``error``, if any: it ends the grid, every later job would fail too."""
    while error is not None:
        if isinstance(error, StorageError):
            return error
        error = error.__cause__ or error.__context__
    return None


def execute_plan(plan: Plan, ctx: RunContext) -> Summary:
    """Pretrain jobs first, then finetune cells; a job whose run is FINISHED in MLflow is skipped."""
    summary = Summary()
    pretrain_runs: dict[str, str] = {}
    tracker = ctx.tracker
    jobs = [*plan.pretrain_jobs, *plan.finetune_cells]
    finished_earlier = {job.key: run.info.run_id for job in jobs if (run := tracker.finished_run(job.key)) is not None}
    if finished_earlier:
        print(f"resuming: {len(finished_earlier)} of {len(jobs)} jobs already FINISHED will be skipped")
    with progress_bar(total=len(jobs), desc=f"grid {ctx.grid.name}", unit="job", position=0) as bar:

        def attempt(name: str, key: str, work) -> str | None:
            if key in finished_earlier:
                summary.skipped.append(name)
                tqdm.write(f"skip {name}: FINISHED earlier (run {finished_earlier[key]})")
                bar.update(1)
                return finished_earlier[key]
            if tracker.close_interrupted(key):
                tqdm.write(f"{name}: closed an interrupted earlier attempt as KILLED")
            try:
                run_id = work()
            except Exception as error:
                storage = _storage_error(error)
                if storage is not None:
                    raise storage from None
                if is_tracking_outage(error):
                    raise TrackingUnavailable(
                        f"lost the MLflow tracking store {tracker.tracking_uri} during {name}: {describe_error(error)}; "
                        "finished jobs are kept, run the same command again when the store is back"
                    ) from None
                summary.failed.append((name, f"{type(error).__name__}: {error}"))
                tqdm.write(f"FAILED {name}: {type(error).__name__}: {error}")
                run_id = None
            else:
                summary.finished.append(name)
            bar.update(1)
            return run_id

        for job in plan.pretrain_jobs:
            run_id = attempt(job.name, job.key, lambda job=job: run_pretrain(job, ctx))
            if run_id is not None:
                pretrain_runs[job.key] = run_id
        for cell in plan.finetune_cells:
            pretrain_run_id = pretrain_runs.get(cell.pretrain_key) if cell.pretrain_key else None
            attempt(cell.name, cell.key, lambda cell=cell, rid=pretrain_run_id: run_finetune(cell, ctx, rid))
    return summary
