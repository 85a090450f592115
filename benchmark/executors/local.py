"""``--executor local``: jobs in this process (``--workers 1``) or in a pool of worker processes.

Each pool worker is a spawned process that builds the run context once and then takes one job at a
time; with GPUs, worker ``i`` sees only GPU ``i`` (mod the GPU count) through ``CUDA_VISIBLE_DEVICES``,
so one job runs per GPU, or ``--jobs-per-gpu N`` (N workers per GPU) for small jobs that leave a large GPU
idle. A finetune cell is handed out as soon as its pretrain job is back. A worker that dies (killed, out of
memory) fails only the job it was running and is replaced.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection, wait

import torch

from benchmark.executors import ExecutorOptions
from benchmark.executors.dispatch import Dispatch, Dispatchable, Summary, lost_job
from benchmark.planner import Plan
from benchmark.tracking import Tracker
from benchmark.worker import JobOutcome, WorkerSetup, run_job, run_job_in_worker, worker_context
from ssl_medbench.core.errors import ConfigError, UserError


def execute(plan: Plan, setup: WorkerSetup, tracker: Tracker, options: ExecutorOptions) -> Summary:
    gpus = visible_gpus() if setup.device != "cpu" else []
    workers = pool_size(options, gpus)
    with Dispatch(plan, tracker, setup.grid.name) as dispatch:
        if workers == 1:
            _run_here(dispatch, dataclasses.replace(setup, threads=options.cpus_per_job))
        else:
            threads = options.cpus_per_job or (None if gpus else max(1, (os.cpu_count() or 1) // workers))
            _run_in_pool(dispatch, dataclasses.replace(setup, threads=threads), workers, gpus, tracker)
        return dispatch.summary


def pool_size(options: ExecutorOptions, gpus: list[str]) -> int:
    """Worker processes: ``--workers``, else ``--jobs-per-gpu`` (default 1) per visible GPU, else 1 (in this process)."""
    if options.workers is not None:
        if options.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {options.workers}")
        return options.workers
    if options.jobs_per_gpu is not None and not gpus:
        raise UserError(
            f"--jobs-per-gpu {options.jobs_per_gpu}: this run sees no GPU (--device cpu, or no CUDA device); leave it "
            "out, or give --workers for worker processes on the CPU"
        )
    return max(1, len(gpus) * (options.jobs_per_gpu or 1))


def slot_gpu(slot: int, gpus: list[str]) -> str | None:
    """The GPU of pool worker ``slot``: slots go round the GPUs, so N jobs per GPU put N workers on each."""
    return gpus[slot % len(gpus)] if gpus else None


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else 0..n-1."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def _run_here(dispatch: Dispatch, setup: WorkerSetup) -> None:
    ctx = worker_context(setup)
    queue: deque[Dispatchable] = deque(dispatch.first_wave())
    threads = torch.get_num_threads()
    if setup.threads is not None:
        torch.set_num_threads(setup.threads)
    try:
        while queue or dispatch.deferred:
            if not queue:
                queue.extend(dispatch.wait_for_due())
                continue
            job, pretrain_run_id = queue.popleft()
            queue.extend(dispatch.record(run_job(ctx, job, pretrain_run_id)))
            queue.extend(dispatch.due())
    finally:
        torch.set_num_threads(threads)  # this process goes on (tests, notebooks) with its own setting


def _worker_main(connection: Connection, setup: WorkerSetup) -> None:
    while (message := connection.recv()) is not None:
        connection.send(run_job_in_worker(setup, *message))


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables while a child process is spawned (it copies the environment at start)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _Worker:
    def __init__(self, slot: int, setup: WorkerSetup, gpu: str | None):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker_main, args=(child, setup), name=f"benchmark-worker-{slot}", daemon=True
        )
        environment = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
        with _environment(**environment):
            self.process.start()
        child.close()
        self.job: Dispatchable | None = None

    def give(self, item: Dispatchable) -> None:
        self.job = item
        self.connection.send(item)

    def stop(self) -> None:
        """Let an idle worker exit on its own; kill a busy or unresponsive one."""
        if self.job is None and self.process.is_alive():
            try:
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


def _run_in_pool(dispatch: Dispatch, setup: WorkerSetup, workers: int, gpus: list[str], tracker: Tracker) -> None:
    if gpus:
        setup = dataclasses.replace(setup, device="cuda")  # each worker sees its one GPU as cuda:0
    setup = dataclasses.replace(
        setup, progress=False
    )  # the driver shows the grid's bar; step bars of parallel jobs would interleave

    def start(slot: int) -> _Worker:
        return _Worker(slot, setup, slot_gpu(slot, gpus))

    pool = [start(slot) for slot in range(workers)]
    queue: deque[Dispatchable] = deque(dispatch.first_wave())
    try:
        while dispatch.remaining:
            for worker in pool:
                if worker.job is None and queue:
                    worker.give(queue.popleft())
            busy = {w.connection: w for w in pool if w.job is not None} | {
                w.process.sentinel: w for w in pool if w.job is not None
            }
            if not busy:  # every job left is held by another driver
                queue.extend(dispatch.wait_for_due())
                continue
            for ready in wait(list(busy), timeout=dispatch.seconds_to_due()):
                worker = busy[ready]
                if worker.job is None:
                    continue  # its message and its exit came back together
                outcome = _answer(worker)
                if outcome is None:
                    outcome = _died(worker, tracker)
                    slot = pool.index(worker)
                    worker.job = None
                    worker.stop()
                    pool[slot] = start(slot)
                worker.job = None
                queue.extend(dispatch.record(outcome))
            queue.extend(dispatch.due())
    finally:
        for worker in pool:
            interrupted = worker.job
            worker.stop()
            if interrupted is not None:  # the grid ended (a fatal error, Ctrl-C) while this job ran
                _close_quietly(tracker, interrupted[0].key)


def _close_quietly(tracker: Tracker, key: str) -> None:
    """Mark the killed job's run KILLED; if the store is what failed, the next run of the grid does it instead."""
    try:
        tracker.claims.close_own(key)
    except Exception:
        pass


def _answer(worker: _Worker) -> JobOutcome | None:
    """The outcome the worker sent, or None if it exited without sending one."""
    try:
        return worker.connection.recv() if worker.connection.poll() else None
    except (EOFError, OSError):
        return None


def _died(worker: _Worker, tracker: Tracker) -> JobOutcome:
    """The outcome of the job whose worker process exited without answering; its MLflow run is closed as KILLED."""
    worker.process.join(timeout=10)
    job, _ = worker.job
    code = worker.process.exitcode
    cause = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return lost_job(job, tracker, f"worker process died ({cause}; killed, or out of memory)")
