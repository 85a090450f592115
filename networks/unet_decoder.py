"""The U-Net synthesis part (Ronneberger et al. 2015) built from any timm encoder's ``feature_info``.

Chen et al. (2019, Fig. 3, first row) use the same reconstruction part for context restoration
and for segmentation, so its weights transfer. From the deepest feature map up: a 2x2 transposed
convolution, concatenation with the skip connection, two 3x3 conv + batch-norm + ReLU units. If
the shallowest feature map is below full resolution (most timm backbones), a final bilinear
upsampling restores it. The output has ``out_channels`` = the shallowest stage's width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.networks.vgg_encoder import _conv_unit


class UpBlock(nn.Module):
    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int, scale: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(deep_channels, out_channels, kernel_size=scale, stride=scale)
        self.convs = nn.Sequential(
            _conv_unit(out_channels + skip_channels, out_channels), _conv_unit(out_channels, out_channels)
        )

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(deep), skip], dim=1))


class UNetDecoder(nn.Module):
    """Decoder for the encoder whose stages have ``channels`` and ``reductions`` (from ``feature_info``)."""

    def __init__(self, channels: Sequence[int], reductions: Sequence[int]):
        super().__init__()
        if len(channels) != len(reductions) or len(channels) < 2:
            raise ValueError(
                f"UNetDecoder needs >= 2 stages with matching channels/reductions, got {channels}, {reductions}"
            )
        self.channels = list(channels)
        self.reductions = list(reductions)
        blocks = []
        for level in range(len(channels) - 1, 0, -1):
            scale = reductions[level] // reductions[level - 1]
            # the input of each block has channels[level] channels: the encoder's deepest map or the block below
            blocks.append(UpBlock(channels[level], channels[level - 1], channels[level - 1], scale))
        self.blocks = nn.ModuleList(blocks)
        self.final_upsample = reductions[0]
        self.out_channels = channels[0]

    @classmethod
    def for_encoder(cls, encoder: nn.Module) -> UNetDecoder:
        return cls(encoder.feature_info.channels(), encoder.feature_info.reduction())

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = block(x, skip)
        if self.final_upsample > 1:
            x = F.interpolate(x, scale_factor=self.final_upsample, mode="bilinear", align_corners=False)
        return x

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the deepest stage's stride)."""
        return self.reductions[-1]
