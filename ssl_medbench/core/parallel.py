"""Data preparation in a pool of processes: phantom generation and decoding subjects into the cache.

Each subject's work depends on nothing but the subject (its files, or the generator's seed and index), so the
results are the same bytes whatever the number of workers. Errors behave as in a loop over the subjects: the
error raised is that of the first failing subject in order (subjects after it that have not started are cancelled;
those already running finish). Ctrl-C cancels every subject not started.

The number of workers is a setting of the process, like the progress bars: the command line sets it from
``--prep-workers``; a library caller gets one worker (the work runs in the calling process) unless it calls
:func:`set_preparation_workers`.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from ssl_medbench.core.errors import UserError

Item = TypeVar("Item")
Result = TypeVar("Result")

_workers = 1


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_preparation_workers(workers: int) -> None:
    """Use ``workers`` processes for data preparation from now on (the command line's ``--prep-workers``)."""
    global _workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"preparation workers must be a whole number >= 1, got {workers!r}")
    _workers = workers


def preparation_workers() -> int:
    return _workers


def map_in_processes(function: Callable[[Item], Result], items: Sequence[Item], bar: tqdm) -> list[Result]:
    """``[function(item) for item in items]``, in up to :func:`preparation_workers` processes, advancing ``bar`` by
    one per item done; ``function`` and the items must pickle. Runs here, in order, with one worker or one item."""
    workers = min(_workers, len(items))
    if workers <= 1:
        results = []
        for item in items:
            results.append(function(item))
            bar.update(1)
        return results
    threads = max(1, available_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=_context(), initializer=_share_cores, initargs=(threads,)) as pool:
        futures = [pool.submit(_call, function, item) for item in items]
        try:
            first_failure = _wait(futures, bar)
        except BaseException:  # Ctrl-C: no new item starts
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if isinstance(first_failure, BrokenProcessPool):
        raise UserError(
            f"a data-preparation worker died abruptly (killed, or out of memory?) with {workers} workers at work; "
            "rerun (what it had not finished is done again), with fewer --prep-workers if memory ran out"
        ) from None
    if first_failure is not None:
        raise first_failure
    return [future.result() for future in futures]


def _call(function: Callable[[Item], Result], item: Item) -> Result:
    """``function(item)`` in a worker; an exception that would not survive the trip back (an argument it cannot
    pickle, an ``__init__`` that pickling cannot call) comes back as a RuntimeError with its type, message and
    traceback, not as a broken pool."""
    try:
        return function(item)
    except Exception as error:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            trace = "".join(traceback.format_exception(error))
            raise RuntimeError(f"{type(error).__name__}: {error}\n(in a preparation worker)\n{trace}") from None
        raise


def _wait(futures: list[Future], bar: tqdm) -> BaseException | None:
    """Wait for ``futures``; on a failure, cancel those after it that have not started. The exception of the first
    failing future in order, or None."""
    position = {future: index for index, future in enumerate(futures)}
    failed_at = len(futures)
    for future in as_completed(futures):
        if future.cancelled():
            continue
        if future.exception() is None:
            bar.update(1)
            continue
        index = position[future]
        if index < failed_at:
            failed_at = index
            for later in futures[index + 1 :]:
                later.cancel()
    return futures[failed_at].exception() if failed_at < len(futures) else None


def _share_cores(threads: int) -> None:
    """Limit a worker's BLAS and OpenMP pools (and torch's) to its share of the cores: a forked worker inherits its
    parent's pools, sized for every core, and workers that each run that many threads only wait on each other."""
    threadpool_limits(threads)
    torch.set_num_threads(threads)


def _context() -> multiprocessing.context.BaseContext:
    """Fork on Linux (workers start in milliseconds and inherit what the parent loaded, such as the brain
    template); spawn elsewhere, where forking a process with threads is unsafe (macOS)."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
