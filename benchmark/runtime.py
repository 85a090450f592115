"""How jobs use the hardware: mixed precision, memory layout, compilation, data-loading workers, checkpoints.

These are the grid's ``runtime`` section. The GPU options act on CUDA only and are reported as
ignored on the CPU, where they would slow training down or change nothing:

- ``precision: bf16`` trains under ``torch.autocast(dtype=torch.bfloat16)`` (forward pass and loss;
  weights, optimiser state and evaluation stay float32). It changes the numbers, so it is part of
  every job key; the other options do not change what is computed and are not.
- ``channels_last`` stores 4D activations NHWC (5D ones NDHWC), the layout tensor cores read fastest.
- ``compile`` wraps the training model in ``torch.compile`` (first steps are slower while it compiles).
- ``loader_workers`` DataLoader worker processes sample patches ahead of the model; batches are
  pinned in page-locked memory and copied without blocking when the device is CUDA.
- ``checkpoint_every`` epochs a job saves model and optimiser state, so a killed or pre-empted job
  resumes from its last checkpoint (0 = never).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class RuntimeConfig:
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    loader_workers: int = 0
    checkpoint_every: int = 1

    def check(self) -> None:
        """Raise ValueError naming the bad key."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers: must be >= 0, got {self.loader_workers}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every: must be >= 0 (0 = no checkpoints), got {self.checkpoint_every}")

    def ignored_on(self, device: torch.device) -> list[str]:
        """The GPU-only options this config asks for that ``device`` does not use."""
        if device.type == "cuda":
            return []
        wanted = {
            "precision=bf16": self.precision == "bf16",
            "channels_last": self.channels_last,
            "compile": self.compile,
        }
        return [name for name, on in wanted.items() if on]

    def uses_bf16(self, device: torch.device) -> bool:
        return self.precision == "bf16" and device.type == "cuda"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The mixed-precision context of a training step (a no-op unless bf16 on CUDA)."""
        if self.uses_bf16(device):
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def memory_format(self, device: torch.device, spatial_dims: int = 2) -> torch.memory_format:
        """The layout of activations with ``spatial_dims`` spatial axes on ``device``."""
        if not (self.channels_last and device.type == "cuda"):
            return torch.contiguous_format
        return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d

    def training_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in the configured memory layout (3D where it has 5D weights), compiled if asked for; the returned
        module shares its parameters."""
        spatial_dims = 3 if any(parameter.dim() == 5 for parameter in model.parameters()) else 2
        model = model.to(memory_format=self.memory_format(device, spatial_dims))
        if self.compile and device.type == "cuda":
            return torch.compile(model)
        return model

    def to_device(self, tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Copy a batch tensor to ``device`` (asynchronously from pinned memory), 4D images and 5D volumes in the
        configured layout."""
        tensor = tensor.to(device, non_blocking=device.type == "cuda")
        if tensor.dim() in (4, 5) and tensor.is_floating_point():
            tensor = tensor.contiguous(memory_format=self.memory_format(device, tensor.dim() - 2))
        return tensor
