"""``--executor ray``: one Ray task per job on the cluster at ``--ray-address`` (or a local one started here).

A finetune cell's task takes its pretrain task's result as an argument, so Ray starts it as soon
as that pretrain job is done. Every task asks for ``--gpus-per-job`` GPUs (Ray then sets
``CUDA_VISIBLE_DEVICES`` for it) and ``--cpus-per-job`` CPUs. A task whose worker dies is retried
once by Ray and resumes from its job's last per-epoch checkpoint.
"""

from __future__ import annotations

import dataclasses

import ray

from benchmark.executors import ExecutorOptions
from benchmark.executors.dispatch import Dispatch, Summary, lost_job
from benchmark.planner import Plan, PretrainJob
from benchmark.tracking import Tracker, describe_error
from benchmark.worker import Job, JobOutcome, WorkerSetup, run_job_in_worker


def _ray_job(setup: WorkerSetup, job: Job, pretrain: JobOutcome | str | None) -> JobOutcome:
    """The task body; ``pretrain`` is the pretrain job's outcome (Ray passes the result of its task) or a run id."""
    pretrain_run_id = pretrain.run_id if isinstance(pretrain, JobOutcome) else pretrain
    return run_job_in_worker(setup, job, pretrain_run_id)


def execute(plan: Plan, setup: WorkerSetup, tracker: Tracker, options: ExecutorOptions) -> Summary:
    setup = dataclasses.replace(setup, threads=options.cpus_per_job or 1, progress=False)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=True)
    try:
        remote = ray.remote(num_cpus=setup.threads, num_gpus=options.gpus(setup.device), max_retries=1)(_ray_job)
        with Dispatch(plan, tracker, setup.grid.name) as dispatch:
            submitted: dict[ray.ObjectRef, Job] = {}
            pretrain_refs: dict[str, ray.ObjectRef] = {}
            for job, run_id in dispatch.first_wave():
                ref = remote.remote(setup, job, run_id)
                submitted[ref] = job
                if isinstance(job, PretrainJob):
                    pretrain_refs[job.key] = ref
            for key, cells in dispatch.waiting.items():
                for cell in cells:
                    submitted[remote.remote(setup, cell, pretrain_refs[key])] = cell
            pending = list(submitted)
            try:
                while pending:
                    done, pending = ray.wait(pending, num_returns=1)
                    for ref in done:
                        dispatch.record(_outcome(ref, submitted[ref], tracker))  # its cells are submitted already
            finally:
                for ref in pending:
                    ray.cancel(ref, force=True)
            return dispatch.summary
    finally:
        if started_here:
            ray.shutdown()


def _outcome(ref: ray.ObjectRef, job: Job, tracker: Tracker) -> JobOutcome:
    """The task's outcome, or a failed one when its worker (or its pretrain task's worker) died."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return lost_job(job, tracker, f"Ray task died: {describe_error(error)}")
