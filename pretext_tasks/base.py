"""The interfaces every initialisation and pretext task implements.

An :class:`Initialisation` says how a downstream network starts (which parts are transferred from a
pretraining job, if any). A :class:`PretextTask` is an initialisation that pretrains: it turns a
batch of unlabeled images into (inputs, targets), provides the head on top of the shared network and
the loss. The runner owns the encoder, decoder, optimiser, loop and logging, so every task is
compared on the same network and schedule.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ENCODER = "encoder"
DECODER = "decoder"


class Initialisation(ABC):
    """How a downstream network is initialised. Subclasses define a frozen dataclass ``Config``."""

    @dataclass(frozen=True)
    class Config:
        pass

    #: Parts of the pretrained network loaded into the downstream network: () or ("encoder",) or ("encoder", "decoder").
    transfers: ClassVar[tuple[str, ...]] = ()
    #: Short label used in tables (e.g. "CR"); defaults to the registry name.
    label: ClassVar[str] = ""

    def __init__(self, config: "Initialisation.Config | None" = None):
        self.config = config if config is not None else self.Config()

    @property
    def requires_pretraining(self) -> bool:
        return isinstance(self, PretextTask)


class PretextTask(Initialisation):
    """A self-supervised task trained on unlabeled images before transfer."""

    @abstractmethod
    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrupt a whole batch ``images`` (B, C, H, W) at once, on its device, drawing only from ``generator``."""

    @abstractmethod
    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        """The task-specific head on top of the decoder output (or encoder features for encoder-only tasks)."""

    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms; the ``"loss"`` entry is optimised, the others are logged."""

    @property
    def uses_decoder(self) -> bool:
        return DECODER in self.transfers

    def forward(self, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Default composition: head(decoder(encoder(x))) or head(encoder(x)[-1]). Siamese tasks override it."""
        features: Sequence[torch.Tensor] = encoder(inputs)
        if decoder is not None:
            return head(decoder(features))
        return head(features[-1])


class ReconstructionTask(PretextTask):
    """A pretext task whose network outputs an image: encoder + decoder + 1x1 conv head, L2 loss to the target.

    Context restoration, auto-encoding and inpainting share this shape (Chen et al. 2019, Fig. 3);
    subclasses define only how a batch is corrupted.
    """

    transfers = (ENCODER, DECODER)

    def build_head(self, in_channels: int, image_channels: int) -> nn.Module:
        return nn.Conv2d(in_channels, image_channels, kernel_size=1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.mse_loss(outputs, targets)}


class PretextNetwork(nn.Module):
    """Encoder (+ decoder) + head, run through the task's ``forward``; the runner trains this."""

    def __init__(self, task: PretextTask, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module):
        super().__init__()
        self.task = task
        self.encoder = encoder
        self.decoder = decoder
        self.head = head

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.task.forward(self.encoder, self.decoder, self.head, inputs)
