"""What a plan will cost before it runs: compute time per job kind and in total, and wall time on the executor.

Each job's cost comes from one of two sources, and the estimate names which:

- **the store**: the median duration of the FINISHED runs of the same signature (kind, initialisation, downstream
  task, protocol, dataset, device type) in the grid's experiment, superseded runs apart. Complete: data loading,
  training, evaluation and logging; but runs of an earlier schedule of the same grid name count too, and a job
  resumed from a checkpoint counts only its last part.
- **calibration**: for a signature the store has not seen, its network trains a warm-up step, then is timed for
  :data:`CALIBRATION_SECONDS` (1 to 10 steps), through the runner's own training loop and runtime options, on
  random inputs of the shapes its task declares for its view and batch size (``batch_spec``: as in the preflight,
  no task code with side effects runs); a downstream network trains on a squared-output surrogate loss (its targets
  need data). A job costs its steps times the measured seconds per step; a knn cell one forward pass of a bank batch
  and one of a test batch. Evaluation, data loading and the corruption of pretext batches are not counted. Seconds
  per step are cached per device and network in ``<out>/calibration/<device>.json``, so a second plan times nothing.

Jobs already FINISHED in the store cost nothing (a run skips them); a dry run reads no data, so it cannot match
its jobs to finished runs and counts them all. Wall time is compute time over the parallel slots (local
``--workers``, slurm ``--slurm-max-concurrent``), at best; a Ray cluster's size is not known here.
Above :data:`LONG_RUN_HOURS` on a CPU, ``run`` says so and points at a cluster or a GPU.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from benchmark.grid import FROZEN, KNN, GridConfig, TrainConfig
from benchmark.jobs import KNN_BATCH
from benchmark.planner import FinetuneCell, Plan, PretrainJob
from benchmark.preflight import PLACEHOLDER_CLASSES, downstream_side
from benchmark.training import train
from ssl_medbench.core.atomic import atomic_path
from ssl_medbench.core.run_tags import Kind, Protocol, Tag
from ssl_medbench.datasets.base import Dataset
from ssl_medbench.networks.encoder import create_encoder
from ssl_medbench.pretext_tasks.base import PretextNetwork, PretextTask

#: Each network trains one warm-up step, then timed steps until they take this many seconds (paper-scale networks
#: take seconds a step on a CPU: one is timed), or MAX_TIMED_STEPS.
CALIBRATION_SECONDS = 0.5
MAX_TIMED_STEPS = 10
#: Compute hours on a CPU above which ``run`` warns and, on a terminal, asks to go on.
LONG_RUN_HOURS = 2.0


@dataclass(frozen=True)
class Network:
    """One distinct network to time: what trains (role), on inputs of ``channels`` x ``side`` x ``side``."""

    role: str  # "pretext:<name>", "supervised:<task>", "<protocol>:<task>"
    channels: int
    side: int
    batch: int
    #: The configs it is built from, as JSON (encoder, the task's config, runtime).
    config: str

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class JobCost:
    kind: str  # a row of the estimate: "pretrain", "finetune", "frozen", "knn"
    seconds: float | None  # None: not estimated, for the reason in ``why``
    source: str  # "store" or "calibration"
    why: str = ""


@dataclass(frozen=True)
class Estimate:
    costs: list[JobCost]
    finished: int
    slots: int | None
    calibration_file: Path | None

    def compute_hours(self) -> float:
        return sum(cost.seconds or 0.0 for cost in self.costs) / 3600

    def wall_hours(self) -> float | None:
        return self.compute_hours() / self.slots if self.slots else None

    def describe(self, device: torch.device) -> str:
        by_source = defaultdict(int)
        for cost in self.costs:
            by_source[cost.source] += 1
        sources = []
        if by_source["store"]:
            sources.append(f"{by_source['store']} jobs from the durations of finished runs in the store")
        if by_source["calibration"]:
            sources.append(
                f"{by_source['calibration']} jobs from a calibration on {device} (training steps only; cached in "
                f"{self.calibration_file})"
            )
        lines = [f"estimate: {'; '.join(sources) or 'nothing left to run'}"]
        table = pd.DataFrame([asdict(cost) for cost in self.costs])
        if not table.empty:
            for kind, rows in table.groupby("kind", sort=False):
                reasons = rows.loc[rows["seconds"].isna(), "why"].value_counts()
                note = "".join(f" ({count} not estimated: {why})" for why, count in reasons.items())
                lines.append(f"  {kind:<9} {len(rows):>5} jobs  {_duration(rows['seconds'].sum())}{note}")
        if self.finished:
            lines.append(f"  ({self.finished} jobs already FINISHED in the store are skipped)")
        wall = self.wall_hours()
        total = f"  total: {_duration(self.compute_hours() * 3600)} of compute"
        total += (
            f", about {_duration(wall * 3600)} of wall time on {self.slots} parallel slot(s)"
            if wall is not None
            else " (wall time: compute over the Ray cluster's workers)"
        )
        return "\n".join([*lines, total])

    def too_long(self, device: torch.device) -> bool:
        return device.type == "cpu" and (self.wall_hours() or self.compute_hours()) > LONG_RUN_HOURS


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 100 * 3600 else f"{seconds / 3600:,.0f} h"


def estimate(
    plan: Plan,
    grid: GridConfig,
    datasets: dict[str, Dataset],
    device: torch.device,
    runs: pd.DataFrame,
    cache_folder: Path,
    slots: int | None,
) -> Estimate:
    """The cost of ``plan`` on ``device``: from ``runs`` (the experiment's runs, :func:`ssl_medbench.reports.runs.
    load_runs`; empty if none) where they have the job's signature, else from a calibration cached in
    ``cache_folder``."""
    planned = [*plan.pretrain_jobs, *plan.finetune_cells]
    done = _finished_keys(runs) & {job.key for job in planned}
    durations = _store_durations(runs)
    device_type = device.type
    jobs = [job for job in planned if job.key not in done]
    calibration = Calibration(cache_folder / f"{device_label(device)}.json", grid, device)
    costs = []
    for job in jobs:
        kind = Kind.PRETRAIN if isinstance(job, PretrainJob) else job.protocol
        stored = durations.get((*_signature(job), job.dataset, device_type))
        if stored is not None:
            costs.append(JobCost(kind, stored, "store"))
        else:
            seconds, why = calibration.job_seconds(job, datasets)
            costs.append(JobCost(kind, seconds, "calibration", why))
    calibration.save()
    return Estimate(costs, len(done), slots, calibration.path if calibration.used else None)


def device_label(device: torch.device) -> str:
    """A file-name-safe name of the device: the GPU's name, or the CPU's, with torch's thread count."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu-{platform.machine()}-{torch.get_num_threads()}threads"
    return "".join(char if char.isalnum() or char in "-." else "_" for char in name)


def _signature(job: PretrainJob | FinetuneCell) -> tuple[str, str, str, str]:
    if isinstance(job, PretrainJob):
        return Kind.PRETRAIN, job.initialisation, job.downstream_task or "", ""
    return Kind.FINETUNE, job.initialisation, job.downstream_task, job.protocol


def _results(runs: pd.DataFrame) -> pd.DataFrame:
    """The FINISHED runs that were not superseded (as :func:`benchmark.claims.finished_runs`, on a table)."""
    finished = runs[runs["status"] == "FINISHED"]
    return finished[finished[Tag.SUPERSEDED].isna()] if Tag.SUPERSEDED in finished else finished


def _finished_keys(runs: pd.DataFrame) -> set[str]:
    if runs.empty or Tag.JOB_KEY not in runs:
        return set()
    return set(_results(runs)[Tag.JOB_KEY].dropna())


def _store_durations(runs: pd.DataFrame) -> dict[tuple[str, ...], float]:
    """Median seconds of the FINISHED runs per signature (kind, initialisation, downstream task, protocol, dataset,
    device type)."""
    if runs.empty or Tag.KIND not in runs:
        return {}
    finished = _results(runs)
    # utc=True: an end-time column without a time (only unfinished runs) reads back tz-naive
    seconds = (
        pd.to_datetime(finished["end_time"], utc=True) - pd.to_datetime(finished["start_time"], utc=True)
    ).dt.total_seconds()

    def column(tag: str, default: str = "") -> pd.Series:
        return finished.get(tag, pd.Series(default, index=finished.index)).fillna(default)

    protocol = column(Tag.PROTOCOL, Protocol.FINETUNE).where(finished[Tag.KIND] == Kind.FINETUNE, "")
    device = column(Tag.DEVICE).str.split(":").str[0]
    keys = zip(
        finished[Tag.KIND],
        column(Tag.INITIALISATION),
        column(Tag.DOWNSTREAM_TASK),
        protocol,
        column(Tag.DATASET),
        device,
    )
    grouped: dict[tuple, list[float]] = defaultdict(list)
    for key, value in zip(keys, seconds):
        grouped[key].append(value)
    return {key: statistics.median(values) for key, values in grouped.items()}


class Calibration:
    """Seconds per training step of each distinct network on one device, timed once and kept in a JSON file."""

    def __init__(self, path: Path, grid: GridConfig, device: torch.device):
        self.path, self.grid, self.device = path, grid, device
        self.seconds: dict[str, float] = _read_cache(path)
        #: networks whose calibration raised, and why (not cached: a fixed plugin is timed next time)
        self.failed: dict[str, str] = {}
        self.used = False
        self._new = False

    def job_seconds(self, job: PretrainJob | FinetuneCell, datasets: dict[str, Dataset]) -> tuple[float | None, str]:
        """The job's training seconds, or None and why it cannot be estimated."""
        grid = self.grid
        channels = len(datasets[job.dataset].channels)
        if isinstance(job, PretrainJob):
            side = _pretrain_side(grid, job)
            schedule = grid.finetune_for(job.downstream_task) if job.downstream_task else grid.pretrain
            role = f"supervised:{job.downstream_task}" if job.downstream_task else f"pretext:{job.initialisation}"
            config = (
                grid.downstream_config(job.downstream_task)
                if job.downstream_task
                else grid.pretext_config_for(job.initialisation, job.dataset, job.view)
            )
        else:
            side = downstream_side(grid, job.downstream_task)[1]
            schedule = grid.finetune_for(job.downstream_task)
            role, config = f"{job.protocol}:{job.downstream_task}", grid.downstream_config(job.downstream_task)
        if side is None:
            return None, "their images' size is read from the data"
        batch = KNN_BATCH if role.startswith(KNN) else schedule.batch_size
        blob = json.dumps([asdict(grid.encoder), asdict(config), asdict(grid.runtime)], sort_keys=True, default=str)
        network = Network(role, channels, side, batch, blob)
        key = network.cache_key()
        if key not in self.seconds and key not in self.failed:
            if not self._new:
                print(f"calibrating: timing each network of the plan on {self.device} (once: kept in {self.path})")
            self._new = True
            try:
                self.seconds[key] = self._time(network, job, datasets)
            except Exception as error:  # the job itself will fail and say why; the plan goes on
                self.failed[key] = f"{type(error).__name__} in the calibration of {role}"
        self.used = True
        if key in self.failed:
            return None, self.failed[key]
        steps = 2 if role.startswith(KNN) else schedule.total_steps  # knn: a bank batch and a test batch
        return steps * self.seconds[key], ""

    def save(self) -> None:
        if self._new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path) as temporary:
                temporary.write_text(json.dumps(self.seconds, indent=1, sort_keys=True))

    def _time(self, network: Network, job: PretrainJob | FinetuneCell, datasets: dict[str, Dataset]) -> float:
        grid, device = self.grid, self.device
        torch.manual_seed(0)
        shape = grid.input_shape(network.batch, network.channels, network.side)
        encoder = create_encoder(grid.encoder, network.channels)
        if isinstance(job, PretrainJob) and job.downstream_task is None:
            task = grid.initialisation(job.initialisation, job.dataset, job.view)
            assert isinstance(task, PretextTask)
            model = PretextNetwork.for_task(task, encoder, network.channels).to(device)
            spec = task.batch_spec(shape)  # its shapes, not make_batch: no task code with side effects runs here
            inputs = torch.rand(spec.inputs.shape, device=device).to(spec.inputs.dtype)
            targets = torch.zeros(spec.targets.shape, dtype=spec.targets.dtype, device=device)
            return _seconds_per_step(model, lambda: (inputs, targets), task.loss, network, grid, device)
        if isinstance(job, FinetuneCell) and job.protocol == KNN:
            return _seconds_per_forward(encoder.to(device), shape, device)
        name = str(job.downstream_task)
        classes = datasets[job.dataset].class_names or PLACEHOLDER_CLASSES  # known once the data are read (MedMNIST)
        downstream = grid.downstream_task(name, network.channels, classes)
        frozen = isinstance(job, FinetuneCell) and job.protocol == FROZEN
        model = (downstream.build_frozen_model if frozen else downstream.build_model)(encoder, None).to(device)
        plain = lambda: (torch.rand(shape, device=device), None)  # noqa: E731
        return _seconds_per_step(
            model, plain, _surrogate_loss, network, grid, device, model.encoder if frozen else None
        )


def _read_cache(path: Path) -> dict[str, float]:
    """The cached seconds per step in ``path``; none if it is missing, or unreadable (then it is timed again and
    rewritten, with a note)."""
    if not path.is_file():
        return {}
    try:
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and all(isinstance(value, (int, float)) for value in cached.values()):
            return cached
    except (OSError, ValueError):
        pass
    print(f"note: {path} is not a calibration this suite wrote; timing the networks again and rewriting it")
    return {}


def _pretrain_side(grid: GridConfig, job: PretrainJob) -> int | None:
    """The side of a pretrain job's inputs: its view's, or that of a downstream task whose view it samples."""
    tasks = [
        task
        for task in grid.downstream_tasks
        if grid.downstream_config(task).dataset == job.dataset and grid.input_view(task) == job.view
    ]
    return job.view.size or (downstream_side(grid, tasks[0])[1] if tasks else None)


def _surrogate_loss(outputs: torch.Tensor, _: object) -> dict[str, torch.Tensor]:
    """A loss through every output: a downstream network's backward pass costs what its task's loss would."""
    return {"loss": outputs.float().square().mean()}


class _Timed(Exception):
    """Ends a calibration once its timed steps add up to CALIBRATION_SECONDS."""


def _seconds_per_step(
    model: nn.Module,
    make_batch: Callable[[], tuple],
    loss: Callable,
    network: Network,
    grid: GridConfig,
    device: torch.device,
    frozen: nn.Module | None = None,
) -> float:
    """Mean seconds of the steps after a warm-up step: as many as take CALIBRATION_SECONDS, at least one and at most
    MAX_TIMED_STEPS (one-step epochs of the runner's own loop, timed at each epoch's end)."""
    marks: list[float] = []

    def on_epoch(epoch: int, means: dict[str, float]) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        marks.append(time.perf_counter())
        if marks[-1] - marks[0] >= CALIBRATION_SECONDS:
            raise _Timed

    def batches(start: int) -> Iterator[tuple]:
        for _ in itertools.count(start):
            yield make_batch()

    schedule = TrainConfig(epochs=1 + MAX_TIMED_STEPS, steps_per_epoch=1, batch_size=network.batch, learning_rate=1e-6)
    try:
        train(
            model, batches, loss, schedule, on_epoch, f"calibrating {network.role}", grid.runtime, device, frozen=frozen
        )
    except _Timed:
        pass
    return (marks[-1] - marks[0]) / (len(marks) - 1)


def _seconds_per_forward(encoder: nn.Module, shape: tuple[int, ...], device: torch.device) -> float:
    """Seconds of one forward pass of ``encoder`` on a batch of ``shape`` (after one warm-up pass)."""
    encoder.eval()
    images = torch.rand(shape, device=device)
    with torch.no_grad():
        encoder(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        encoder(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter() - start
