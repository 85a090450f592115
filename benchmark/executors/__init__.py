"""Executors run a plan's jobs: ``local`` (this process, or a pool of worker processes, one per GPU),
``slurm`` (submitit job arrays) and ``ray`` (one Ray task per job). All of them run the same job
function (:func:`benchmark.worker.run_job_in_worker`) against the same MLflow tracking store."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import torch

from benchmark.executors.dispatch import Summary
from benchmark.planner import Plan
from benchmark.tracking import Tracker
from benchmark.worker import WorkerSetup
from ssl_medbench.core.errors import ConfigError, UserError

#: executor name -> (module, the optional extra that installs its engine, the engine's import name)
EXECUTORS = {
    "local": ("benchmark.executors.local", None, None),
    "slurm": ("benchmark.executors.slurm", "slurm", "submitit"),
    "ray": ("benchmark.executors.ray_executor", "ray", "ray"),
}


@dataclass(frozen=True)
class ExecutorOptions:
    """Command-line settings of the executors; each executor reads its own."""

    workers: int | None = None  # local: worker processes (default: one per visible GPU, else 1)
    jobs_per_gpu: int | None = None  # local: worker processes per visible GPU (default 1; not with workers)
    gpus_per_job: int | None = None  # slurm, ray (default: 1 if the driver sees CUDA or --device asks for it, else 0)
    cpus_per_job: int | None = (
        None  # CPUs and torch threads per job: slurm (default 4), ray (default 1), local (default cores / workers)
    )
    mem_gb: int = 32  # slurm
    time_min: int = 24 * 60  # slurm: wall-time limit of one job
    partition: str | None = None  # slurm
    max_concurrent: int = 64  # slurm: jobs of one array running at once
    slurm_folder: str | None = None  # slurm: logs and pickled jobs, on a shared file system (default <out>/slurm)
    slurm_cluster: str | None = None  # slurm: submitit cluster; "local" runs the jobs as subprocesses here (tests)
    ray_address: str | None = None  # ray: existing cluster (default: start a local one)

    def gpus(self, device: str) -> int:
        """GPUs per job: ``--gpus-per-job``, or 1 when ``--device`` asks for CUDA or is auto and CUDA is visible here, else 0."""
        if self.gpus_per_job is not None:
            return self.gpus_per_job
        return 1 if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else 0


class Executor(Protocol):
    def __call__(self, plan: Plan, setup: WorkerSetup, tracker: Tracker, options: ExecutorOptions) -> Summary: ...


def get_executor(name: str) -> Executor:
    """The ``execute`` function of executor ``name``; a clear error names the extra to install if its engine is missing."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r}: expected one of {', '.join(EXECUTORS)}")
    module, extra, engine = EXECUTORS[name]
    if engine is not None:
        try:
            importlib.import_module(engine)
        except ImportError:
            raise UserError(
                f"--executor {name} needs {engine}, which is not installed: pip install 'ssl-medbench[{extra}]'"
            ) from None
    return importlib.import_module(module).execute
