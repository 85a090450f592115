"""A light reconstruction part of a few deconvolution layers (Chen et al. 2019, Fig. 3, second row).

For classification-type downstream tasks the paper pretrains reconstruction tasks with "a few
deconvolution layers" on the encoder's deepest feature map instead of a U-Net decoder, so the
features must carry the image content themselves (no skip connections). Each layer is a 2x2
transposed convolution with stride 2 + batch-norm + ReLU, halving the channels (at least 8), until
the input resolution is restored (in 3D: 2x2x2 transposed convolutions). It is not transferred: classification
networks have no decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_medbench.networks.encoder import spatial_dims_of
from ssl_medbench.networks.vgg_encoder import layers_for

MIN_CHANNELS = 8


class DeconvDecoder(nn.Module):
    """Upsamples the deepest feature map (``channels`` wide, stride ``reduction``) back to full resolution."""

    def __init__(self, channels: int, reduction: int, spatial_dims: int = 2):
        super().__init__()
        _, transposed, norm, _, _ = layers_for(spatial_dims)
        if reduction < 1 or reduction & (reduction - 1):
            raise ValueError(f"DeconvDecoder needs a power-of-two encoder stride, got {reduction}")
        layers: list[nn.Module] = []
        width = channels
        for _ in range(reduction.bit_length() - 1):
            narrower = max(width // 2, MIN_CHANNELS)
            layers += [
                transposed(width, narrower, kernel_size=2, stride=2),
                norm(narrower),
                nn.ReLU(inplace=True),
            ]
            width = narrower
        self.layers = nn.Sequential(*layers)
        self.out_channels = width

    @classmethod
    def for_encoder(cls, encoder: nn.Module) -> DeconvDecoder:
        return cls(encoder.feature_info.channels()[-1], encoder.feature_info.reduction()[-1], spatial_dims_of(encoder))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.layers(features[-1])
