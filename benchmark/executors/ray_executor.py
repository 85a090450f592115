"""``--executor ray``: one Ray task per job on the cluster at ``--ray-address`` (or a local one started here).

Pretrain jobs and the cells that need no pretraining are submitted at once; a finetune cell is submitted as soon as
its pretrain job is back, and a job another driver holds (:mod:`benchmark.claims`) again when it is due. Every task
asks for ``--gpus-per-job`` GPUs (Ray then sets ``CUDA_VISIBLE_DEVICES`` for it) and ``--cpus-per-job`` CPUs. A
task whose worker dies is retried once by Ray and resumes from its job's last per-epoch checkpoint.
"""

from __future__ import annotations

import dataclasses

import ray

from benchmark.executors import ExecutorOptions
from benchmark.executors.dispatch import Dispatch, Dispatchable, Summary, lost_job
from benchmark.planner import Plan
from benchmark.tracking import Tracker, describe_error
from benchmark.worker import Job, JobOutcome, WorkerSetup, run_job_in_worker


def execute(plan: Plan, setup: WorkerSetup, tracker: Tracker, options: ExecutorOptions) -> Summary:
    setup = dataclasses.replace(setup, threads=options.cpus_per_job or 1, progress=False)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=True)
    try:
        remote = ray.remote(num_cpus=setup.threads, num_gpus=options.gpus(setup.device), max_retries=1)(
            run_job_in_worker
        )
        with Dispatch(plan, tracker, setup.grid.name) as dispatch:
            submitted: dict[ray.ObjectRef, Job] = {}

            def submit(items: list[Dispatchable]) -> None:
                for job, run_id in items:
                    submitted[remote.remote(setup, job, run_id)] = job

            submit(dispatch.first_wave())
            try:
                while submitted or dispatch.deferred:
                    if not submitted:
                        submit(dispatch.wait_for_due())
                        continue
                    done, _ = ray.wait(list(submitted), num_returns=1, timeout=dispatch.seconds_to_due())
                    for ref in done:
                        submit(dispatch.record(_outcome(ref, submitted.pop(ref), tracker)))
                    submit(dispatch.due())
            finally:
                for ref in submitted:
                    ray.cancel(ref, force=True)
            return dispatch.summary
    finally:
        if started_here:
            ray.shutdown()


def _outcome(ref: ray.ObjectRef, job: Job, tracker: Tracker) -> JobOutcome:
    """The task's outcome, or a failed one when its worker died."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return lost_job(job, tracker, f"Ray task died: {describe_error(error)}")
