"""``autoencoder`` (AE): Bengio et al. 2007, "Greedy layer-wise training of deep networks", as used by Chen et al. 2019.

The encoder + decoder reconstruct their uncorrupted input with an L2 loss. Following Chen et al., the network is the
same encoder + U-Net decoder as every reconstruction task (so both parts transfer to the segmentation U-Net), trained
end to end rather than layer-wise.

A U-Net's skip connections hand the input to the decoder's last stage almost unchanged, so an auto-encoder that keeps
them learns to copy and its features say little ("AE is no better than random" would then be an artefact of the
architecture). ``autoencoder`` therefore withholds the skip features during pretraining (the decoder gets zeros in
their place) and reconstructs through the bottleneck alone, which is what an auto-encoder is meant to learn; the
network keeps its shape, so encoder and decoder transfer as for context restoration (the decoder's skip weights, which
never see a signal, transfer as initialised). ``autoencoder_with_skips`` (label AE-skip) is the variant that keeps
them, for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import ReconstructionTask


@PRETEXT_TASKS.register("autoencoder")
class AutoEncoder(ReconstructionTask):
    """Reconstruct the input image itself (inputs and targets are the same tensor) through the bottleneck alone."""

    label = "AE"
    randomised = False
    spatial_dims_supported = (2, 3)
    #: Whether the decoder sees the encoder's skip features while pretraining.
    keeps_skips: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        pass

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return images, images

    def forward(
        self, encoder: nn.Module, decoder: nn.Module | None, head: nn.Module, inputs: torch.Tensor
    ) -> torch.Tensor:
        if decoder is None or self.keeps_skips:
            return super().forward(encoder, decoder, head, inputs)
        features: Sequence[torch.Tensor] = encoder(inputs)
        return head(decoder([*(torch.zeros_like(skip) for skip in features[:-1]), features[-1]]))


@PRETEXT_TASKS.register("autoencoder_with_skips")
class AutoEncoderWithSkips(AutoEncoder):
    """The auto-encoder whose decoder keeps the U-Net's skip connections while pretraining (it can copy its input)."""

    label = "AE-skip"
    keeps_skips = True
