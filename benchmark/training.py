"""The one training loop every pretext task and downstream task goes through (Adam, fixed steps per epoch)."""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import nn
from benchmark.progress import progress_bar

from benchmark.grid import TrainConfig

Batch = tuple[torch.Tensor, torch.Tensor]


def train(
    model: nn.Module,
    next_batch: Callable[[], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    schedule: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None],
    description: str,
) -> list[dict[str, float]]:
    """Train for ``schedule.epochs`` x ``steps_per_epoch`` steps; returns the per-epoch mean of each loss term.

    ``on_epoch(epoch, means)`` is called after each epoch (the runner logs to MLflow there).
    A non-finite loss stops training with FloatingPointError: the job is recorded as failed.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    model.train()
    history = []
    total = schedule.epochs * schedule.steps_per_epoch
    with progress_bar(total=total, desc=description, unit="step", leave=False, position=1) as bar:
        for epoch in range(schedule.epochs):
            sums: dict[str, float] = defaultdict(float)
            for _ in range(schedule.steps_per_epoch):
                inputs, targets = next_batch()
                losses = loss_fn(model(inputs), targets)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{description}: loss became {loss.item()} at epoch {epoch}")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                for name, value in losses.items():
                    sums[name] += float(value.detach())
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.4f}")
            means = {name: total_value / schedule.steps_per_epoch for name, total_value in sums.items()}
            history.append(means)
            on_epoch(epoch, means)
    return history
