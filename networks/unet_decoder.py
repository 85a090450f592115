"""The U-Net synthesis part (Ronneberger et al. 2015) built from any timm encoder's ``feature_info``.

Chen et al. (2019, Fig. 3, first row) use the same reconstruction part for context restoration
and for segmentation, so its weights transfer. From the deepest feature map up: a 2x2 transposed
convolution, concatenation with the skip connection, two 3x3 conv + batch-norm + ReLU units. If
the shallowest feature map is below full resolution (most timm backbones), a final bilinear
upsampling restores it. The output has ``out_channels`` = the shallowest stage's width. The same decoder in 3D
(2x2x2 transposed convolutions, 3x3x3 units, trilinear upsampling) is the 3D U-Net's synthesis part (Cicek et al.
2016); :meth:`UNetDecoder.for_encoder` builds the one that matches the encoder's spatial dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ssl_medbench.networks.encoder import spatial_dims_of
from ssl_medbench.networks.vgg_encoder import _conv_unit, layers_for

#: Interpolation mode of the final upsampling per number of spatial dimensions.
UPSAMPLING = {2: "bilinear", 3: "trilinear"}


class UpBlock(nn.Module):
    def __init__(self, deep_channels: int, skip_channels: int, out_channels: int, scale: int, spatial_dims: int = 2):
        super().__init__()
        _, transposed, _, _, _ = layers_for(spatial_dims)
        self.up = transposed(deep_channels, out_channels, kernel_size=scale, stride=scale)
        self.convs = nn.Sequential(
            _conv_unit(out_channels + skip_channels, out_channels, spatial_dims),
            _conv_unit(out_channels, out_channels, spatial_dims),
        )

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(deep), skip], dim=1))


class UNetDecoder(nn.Module):
    """Decoder for the encoder whose stages have ``channels`` and ``reductions`` (from ``feature_info``), on
    ``spatial_dims`` (2 or 3) dimensions."""

    def __init__(self, channels: Sequence[int], reductions: Sequence[int], spatial_dims: int = 2):
        super().__init__()
        if len(channels) != len(reductions) or len(channels) < 2:
            raise ValueError(
                f"UNetDecoder needs >= 2 stages with matching channels/reductions, got {channels}, {reductions}"
            )
        self.channels = list(channels)
        self.reductions = list(reductions)
        self.spatial_dims = spatial_dims
        blocks = []
        for level in range(len(channels) - 1, 0, -1):
            scale = reductions[level] // reductions[level - 1]
            # the input of each block has channels[level] channels: the encoder's deepest map or the block below
            blocks.append(UpBlock(channels[level], channels[level - 1], channels[level - 1], scale, spatial_dims))
        self.blocks = nn.ModuleList(blocks)
        self.final_upsample = reductions[0]
        self.out_channels = channels[0]

    @classmethod
    def for_encoder(cls, encoder: nn.Module) -> UNetDecoder:
        return cls(encoder.feature_info.channels(), encoder.feature_info.reduction(), spatial_dims_of(encoder))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for block, skip in zip(self.blocks, reversed(features[:-1])):
            x = block(x, skip)
        if self.final_upsample > 1:
            x = F.interpolate(
                x, scale_factor=self.final_upsample, mode=UPSAMPLING[self.spatial_dims], align_corners=False
            )
        return x

    @property
    def size_multiple(self) -> int:
        """Every input side must be a multiple of this (the deepest stage's stride)."""
        return self.reductions[-1]
