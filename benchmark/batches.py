"""Training batches indexed by step: batch ``s`` of a job is drawn from generators seeded by (job seed, s).

Because no batch depends on the ones before it, batches can be sampled ahead in DataLoader worker
processes, and a job resumed from a checkpoint at step ``s`` sees exactly the batches an
uninterrupted job would have seen from ``s`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from benchmark.grid import TrainConfig
from benchmark.runtime import RuntimeConfig
from ssl_medbench.core.sampling import Batch, BatchSampler


def step_seed(seed: int, step: int) -> int:
    """A 64-bit seed for ``step`` of the stream ``seed``; distinct streams and steps give independent seeds."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0])


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` for one step's random choices (corruption, augmentation)."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, step))


class StepBatches(TorchDataset):
    """Map-style dataset whose item ``s`` is the host batch of step ``s``."""

    def __init__(self, sampler: BatchSampler, batch_size: int, seed: int):
        self.sampler = sampler
        self.batch_size = batch_size
        self.seed = seed

    def __getitem__(self, step: int) -> Batch:
        return self.sampler.sample(self.batch_size, step_generator(self.seed, step))


def host_batches(
    batches: StepBatches, steps: range, workers: int = 0, pin_memory: bool = False
) -> Iterator[tuple[int, Batch]]:
    """``(step, batch)`` for each step in order; with ``workers`` > 0, sampled ahead in that many processes."""
    if workers == 0:
        for step in steps:
            inputs, targets = batches[step]
            yield step, ((inputs.pin_memory(), targets.pin_memory()) if pin_memory else (inputs, targets))
        return
    loader = DataLoader(
        batches, batch_size=None, sampler=steps, num_workers=workers, pin_memory=pin_memory, prefetch_factor=4
    )
    yield from zip(steps, loader)


def device_batches(
    sampler: BatchSampler,
    schedule: TrainConfig,
    seed: int,
    runtime: RuntimeConfig,
    device: torch.device,
    to_batch: Callable[[int, torch.Tensor, torch.Tensor], Batch],
) -> Callable[[int], Iterator[Batch]]:
    """The ``batches(start_step)`` stream the training loop takes: host batches of ``sampler`` drawn per step from
    ``seed`` (ahead, in ``runtime.loader_workers`` processes), copied to ``device``, then ``to_batch(step, inputs, targets)``
    (corruption or augmentation on the device)."""
    step_batches = StepBatches(sampler, schedule.batch_size, seed)

    def stream(start: int) -> Iterator[Batch]:
        for step, (inputs, targets) in host_batches(
            step_batches, range(start, schedule.total_steps), runtime.loader_workers, device.type == "cuda"
        ):
            yield to_batch(step, runtime.to_device(inputs, device), runtime.to_device(targets, device))

    return stream
