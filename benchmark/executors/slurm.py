"""``--executor slurm``: each job a task of a SLURM job array, submitted through submitit.

Two waves: the pretrain jobs together with the cells that need no pretraining, then the cells of
the pretrain jobs as they come back (one array per wave, ``--slurm-max-concurrent`` tasks at once); jobs another
driver held come back in a later wave.
The driver waits for the arrays, so run it where it may stay up (a login-node tmux, or a small CPU
job); stopped and started again, it skips what has FINISHED. A task pre-empted or out of time is
requeued by submitit and resumes from its job's last per-epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable
from tqdm.auto import tqdm

from benchmark.executors import ExecutorOptions
from benchmark.executors.dispatch import Dispatch, Dispatchable, Summary, lost_job
from benchmark.planner import Plan
from benchmark.tracking import Tracker, describe_error
from benchmark.worker import Job, JobOutcome, WorkerSetup, run_job_in_worker

#: Seconds between two looks at the state of a wave's tasks.
POLL_SECONDS = 5.0


class BenchmarkTask(Checkpointable):
    """One job as a SLURM task; submitit's ``checkpoint`` requeues it with the same arguments on pre-emption."""

    def __call__(self, setup: WorkerSetup, job: Job, pretrain_run_id: str | None) -> JobOutcome:
        return run_job_in_worker(setup, job, pretrain_run_id)


def execute(plan: Plan, setup: WorkerSetup, tracker: Tracker, options: ExecutorOptions) -> Summary:
    folder = Path(options.slurm_folder) if options.slurm_folder else setup.out / "slurm"
    setup = dataclasses.replace(setup, threads=options.cpus_per_job or 4, progress=False)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.slurm_cluster)
    parameters = {
        "name": f"benchmark-{setup.grid.name}",
        "timeout_min": options.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": setup.threads,
        "gpus_per_node": options.gpus(setup.device),
        "mem_gb": options.mem_gb,
        "slurm_array_parallelism": options.max_concurrent,
    }
    if options.partition:
        parameters["slurm_partition"] = options.partition
    executor.update_parameters(**parameters)
    with Dispatch(plan, tracker, setup.grid.name) as dispatch:
        wave = dispatch.first_wave()
        while wave or dispatch.deferred:
            ready = _run_wave(executor, wave, setup, dispatch, tracker, folder) if wave else []
            wave = ready + dispatch.due() or dispatch.wait_for_due()
        return dispatch.summary


def _run_wave(
    executor: submitit.AutoExecutor,
    wave: list[Dispatchable],
    setup: WorkerSetup,
    dispatch: Dispatch,
    tracker: Tracker,
    folder: Path,
) -> list[Dispatchable]:
    """Submit ``wave`` as one array, record each task as it ends; returns the cells that became ready."""
    jobs = executor.map_array(
        BenchmarkTask(), [setup] * len(wave), [job for job, _ in wave], [run_id for _, run_id in wave]
    )
    tqdm.write(
        f"submitted {len(jobs)} jobs as {executor.cluster} array {jobs[0].job_id.split('_')[0]}; logs in {folder}"
    )
    by_id = {submitted.job_id: job for submitted, (job, _) in zip(jobs, wave)}
    ready: list[Dispatchable] = []
    try:
        for submitted in submitit.helpers.as_completed(jobs, poll_frequency=POLL_SECONDS):
            ready += dispatch.record(_outcome(submitted, by_id[submitted.job_id], tracker))
    finally:
        for submitted in jobs:
            if not submitted.done():
                submitted.cancel(check=False)
    return ready


def _outcome(submitted: submitit.Job, job: Job, tracker: Tracker) -> JobOutcome:
    """The task's returned outcome, or a failed one naming its SLURM state and log when the task itself died."""
    try:
        return submitted.result()
    except Exception as error:
        return lost_job(
            job,
            tracker,
            f"{executor_state(submitted)} task {submitted.job_id} died: {describe_error(error)} "
            f"(log: {submitted.paths.stderr})",
        )


def executor_state(submitted: submitit.Job) -> str:
    try:
        return submitted.state
    except Exception:  # the scheduler cannot tell any more
        return "UNKNOWN"
