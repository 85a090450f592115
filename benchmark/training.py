"""The one training loop every pretext task and downstream task goes through (Adam, fixed steps per epoch, the
schedule's learning rate set before each step)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator

import torch
from torch import nn

from benchmark.checkpoints import Checkpoint
from benchmark.grid import TrainConfig
from benchmark.learning_rates import learning_rate_at
from benchmark.runtime import RuntimeConfig
from ssl_medbench.core.progress import progress_bar
from ssl_medbench.core.sampling import Batch


def train(
    model: nn.Module,
    batches: Callable[[int], Iterator[Batch]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
    schedule: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None],
    description: str,
    runtime: RuntimeConfig = RuntimeConfig(),
    device: torch.device = torch.device("cpu"),
    checkpoint: Checkpoint | None = None,
    frozen: nn.Module | None = None,
) -> list[dict[str, float]]:
    """Train for ``schedule.epochs`` x ``steps_per_epoch`` steps; returns the per-epoch mean of each loss term.

    ``frozen``: a part of ``model`` that does not train (the ``frozen`` protocol's encoder): its parameters are left
    out of the optimiser and it stays in eval mode, so neither its weights nor its batch-norm statistics change.

    ``batches(step)`` yields the device batches from ``step`` on. After each epoch the checkpoint (if
    any) is saved, then ``on_epoch(epoch, means)`` is called (the runner logs to MLflow there); a job
    resumed from a checkpoint calls it again for the epochs done before. A non-finite loss stops
    training with FloatingPointError: the job is recorded as failed.
    """
    if frozen is not None:
        frozen.requires_grad_(False)
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimiser = torch.optim.Adam(trained, lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    history = checkpoint.restore(model, optimiser) if checkpoint is not None else []
    for epoch, means in enumerate(history):
        on_epoch(epoch, means)
    runnable = runtime.training_model(model, device)
    runnable.train()
    if frozen is not None:
        frozen.eval()
    steps = schedule.steps_per_epoch
    with progress_bar(
        total=schedule.total_steps,
        initial=len(history) * steps,
        desc=description,
        unit="step",
        leave=False,
        position=1,
    ) as bar:
        stream = batches(len(history) * steps)
        for epoch in range(len(history), schedule.epochs):
            sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=device))
            for step in range(epoch * steps, (epoch + 1) * steps):
                rate = learning_rate_at(schedule, step)
                for group in optimiser.param_groups:
                    group["lr"] = rate
                inputs, targets = next(stream)
                with runtime.autocast(device):
                    losses = loss_fn(runnable(inputs), targets)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{description}: loss became {loss.item()} at epoch {epoch}")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                for name, value in losses.items():
                    sums[name] += value.detach().float()
                bar.update(1)
            means = {name: float(total) / steps for name, total in sums.items()}
            bar.set_postfix(epoch=epoch, loss=f"{means['loss']:.4f}")
            history.append(means)
            if checkpoint is not None:
                checkpoint.save(model, optimiser, history, last_epoch=epoch == schedule.epochs - 1)
            on_epoch(epoch, means)
    return history
