"""A tiny third-party pretext task (denoising auto-encoder), registered only through an entry point in tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_medbench.pretext_tasks.base import ReconstructionTask


class Denoising(ReconstructionTask):
    label = "DN"

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        noise: float = 0.5

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        return images + self.config.noise * noise, images


class NotAPretextTask:
    """Violates the interface: registering it must fail with a message naming the plugin."""


class NanLoss(Denoising):
    """Its loss is NaN: the runner must record its pretrain job as FAILED and go on."""

    label = "NAN"

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(outputs, targets) * float("nan")}


class KillsWorker(Denoising):
    """Its first batch SIGKILLs the process that runs it, as the out-of-memory killer would."""

    label = "KILL"

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


class FillsTheDisk(Denoising):
    """Its first batch meets a full disk, as writing a checkpoint or an artifact would: the grid must end."""

    label = "FULL"

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        from ssl_medbench.core.errors import StorageError

        raise StorageError(
            "/shared/out/checkpoints/x.pt: could not write (No space left on device); nothing was left half-written"
        )
