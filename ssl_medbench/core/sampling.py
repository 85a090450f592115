"""The protocol between data and training loop: a sampler draws one training batch from an explicit generator."""

from __future__ import annotations

from typing import Protocol

import torch

#: (inputs, targets) of one training step.
Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSampler(Protocol):
    """What pretext and downstream samplers implement; the runner turns it into step-indexed batches."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` examples as CPU tensors, every random choice drawn from ``generator``."""
        ...
