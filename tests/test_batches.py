"""Step-indexed batch streams: 64-bit step seeds, batches sampled in this process unless loader workers are asked
for, and the training loop's device stream (every step of the schedule, resumable at any step, from the job's seed)."""

from __future__ import annotations

import pytest
import torch

from benchmark.batches import StepBatches, device_batches, host_batches, step_generator, step_seed
from benchmark.grid import TrainConfig
from benchmark.runtime import RuntimeConfig

SCHEDULE = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=4)
CPU = torch.device("cpu")


class CountingSampler:
    """Gaussian images with a class label each (the sign of their sum); counts the batches drawn in this process."""

    def __init__(self) -> None:
        self.calls = 0

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        images = torch.randn((batch_size, 2, 6, 6), generator=generator)
        return images, (images.sum(dim=(1, 2, 3)) > 0).long()


def _expected(seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of ``step``: drawn by a fresh sampler from a generator seeded with the step's seed."""
    return CountingSampler().sample(SCHEDULE.batch_size, torch.Generator().manual_seed(step_seed(seed, step)))


def test_step_seeds_use_all_64_bits_and_seed_the_step_generator():
    seeds = [step_seed(5, step) for step in range(64)]
    assert all(0 <= seed < 2**64 for seed in seeds)
    assert max(seeds) >= 2**32  # not a 32-bit seed: 64 draws all below 2**32 would have probability 2**-2048
    generator = step_generator(5, 3)
    assert generator.initial_seed() == seeds[3] and generator.device == CPU


def test_without_workers_batches_are_sampled_in_this_process_one_step_at_a_time():
    sampler = CountingSampler()
    stream = host_batches(StepBatches(sampler, SCHEDULE.batch_size, seed=2), range(10, 1000))
    step, (inputs, targets) = next(stream)
    assert step == 10 and sampler.calls == 1
    assert torch.equal(inputs, _expected(2, 10)[0]) and torch.equal(targets, _expected(2, 10)[1])


def _collect(
    runtime: RuntimeConfig, sampler: CountingSampler, start: int
) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    stream = device_batches(sampler, SCHEDULE, 11, runtime, CPU, lambda step, x, y: (step, x, y))
    return list(stream(start))


def test_device_batches_cover_the_schedule_from_the_job_seed_and_resume_at_any_step():
    """Every step of epochs x steps_per_epoch, each step's batch drawn from (seed, step) and handed to ``to_batch``
    as (step, inputs, targets); a stream started at step 4 sees exactly the batches of steps 4 and 5."""
    sampler = CountingSampler()
    batches = _collect(RuntimeConfig(), sampler, 0)
    assert [step for step, _, _ in batches] == list(range(6)) and sampler.calls == 6
    for step, inputs, targets in batches:
        expected_inputs, expected_targets = _expected(11, step)
        assert inputs.shape == (4, 2, 6, 6) and inputs.device == CPU
        assert torch.equal(inputs, expected_inputs) and torch.equal(targets, expected_targets)
    resumed = _collect(RuntimeConfig(), CountingSampler(), 4)
    assert [step for step, _, _ in resumed] == [4, 5]
    for (_, inputs, targets), (_, x, y) in zip(resumed, batches[4:]):
        assert torch.equal(inputs, x) and torch.equal(targets, y)


def test_device_batches_are_sampled_ahead_in_the_loader_workers_with_the_same_values():
    sampler = CountingSampler()
    ahead = _collect(RuntimeConfig(loader_workers=2), sampler, 1)
    assert sampler.calls == 0  # drawn in the worker processes, not in the training process
    assert [step for step, _, _ in ahead] == [1, 2, 3, 4, 5]
    for (_, inputs, targets), (_, x, y) in zip(ahead, _collect(RuntimeConfig(), CountingSampler(), 1)):
        assert torch.equal(inputs, x) and torch.equal(targets, y)


@pytest.mark.parametrize("device, pinned", [(torch.device("cuda", 0), True), (CPU, False)])
def test_batches_bound_for_a_cuda_device_are_staged_in_pinned_host_memory(monkeypatch, device, pinned):
    """Page-locked host batches let the copy to a CUDA device overlap the step; a CPU device gets none. Checked
    without a GPU: the host stream is recorded, and copying to the device is the identity."""
    asked = []

    def recording_host_batches(batches, steps, workers, pin_memory):
        asked.append(pin_memory)
        return host_batches(batches, steps, workers)

    monkeypatch.setattr("benchmark.batches.host_batches", recording_host_batches)
    monkeypatch.setattr(RuntimeConfig, "to_device", lambda self, tensor, target: tensor)
    stream = device_batches(CountingSampler(), SCHEDULE, 11, RuntimeConfig(), device, lambda step, x, y: (x, y))
    assert len(list(stream(0))) == 6 and asked == [pinned]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory and CUDA generators need a CUDA device")
def test_on_cuda_host_batches_are_pinned_and_step_generators_live_on_the_device(monkeypatch):
    batches = StepBatches(CountingSampler(), SCHEDULE.batch_size, seed=2)
    for workers in (0, 2):
        for _, (inputs, targets) in host_batches(batches, range(3), workers, pin_memory=True):
            assert inputs.is_pinned() and targets.is_pinned()
    pinned = []
    to_device = RuntimeConfig.to_device

    def recording(self: RuntimeConfig, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        pinned.append(tensor.is_pinned())
        return to_device(self, tensor, device)

    monkeypatch.setattr(RuntimeConfig, "to_device", recording)
    cuda = torch.device("cuda")
    stream = device_batches(CountingSampler(), SCHEDULE, 11, RuntimeConfig(), cuda, lambda step, x, y: (x, y))
    for inputs, targets in stream(0):
        assert inputs.device.type == "cuda" and targets.device.type == "cuda"
    assert pinned == [True] * 12
    assert step_generator(5, 3, "cuda").device.type == "cuda"
