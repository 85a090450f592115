"""The learning rate of each training step: linear warm-up (Goyal et al. 2017, "Accurate, large minibatch SGD"),
then constant or a half-cosine decay to 0 (Loshchilov & Hutter 2017, "SGDR"), as set by a
:class:`~benchmark.grid.TrainConfig`. A function of the step alone, so a resumed job continues on the same curve."""

from __future__ import annotations

import math

from benchmark.grid import TrainConfig


def learning_rate_at(schedule: TrainConfig, step: int) -> float:
    """The learning rate of 0-based ``step`` of ``schedule`` (see :class:`~benchmark.grid.TrainConfig`): linear
    warm-up over its ``warmup_steps``, then constant or a half cosine reaching 0 after the last step."""
    if step < schedule.warmup_steps:
        return schedule.learning_rate * (step + 1) / schedule.warmup_steps
    if schedule.learning_rate_schedule == "constant":
        return schedule.learning_rate
    if schedule.learning_rate_schedule == "cosine":
        progress = (step - schedule.warmup_steps) / (schedule.total_steps - schedule.warmup_steps)
        return schedule.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning_rate_schedule {schedule.learning_rate_schedule!r}")
