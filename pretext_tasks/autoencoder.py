"""``autoencoder`` (AE): Bengio et al. 2007, "Greedy layer-wise training of deep networks", as used by Chen et al. 2019.

The encoder + decoder reconstruct their uncorrupted input with an L2 loss. Following Chen et al.,
the network is the same encoder + U-Net decoder as every reconstruction task (so both parts
transfer to the segmentation U-Net), trained end to end rather than layer-wise. Note that the U-Net's
skip connections let an auto-encoder copy its input through the shallowest stage; this is the
method as compared in the paper, whose Table 5 shows AE features adding little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_medbench.pretext_tasks import PRETEXT_TASKS
from ssl_medbench.pretext_tasks.base import ReconstructionTask


@PRETEXT_TASKS.register("autoencoder")
class AutoEncoder(ReconstructionTask):
    """Reconstruct the input image itself (inputs and targets are the same tensor)."""

    label = "AE"
    randomised = False

    @dataclass(frozen=True)
    class Config(ReconstructionTask.Config):
        pass

    def make_batch(self, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return images, images
