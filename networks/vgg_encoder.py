"""The VGG-like analysis part of Chen et al. (2019)'s 2D U-Net, registered as the timm model ``chen_vgg``.

Each stage is two 3x3 conv + batch-norm + ReLU units; every stage after the first starts with a
2x2 max-pool (the "down-sampling units" of the paper's Fig. 3). Create it only through timm::

    timm.create_model("chen_vgg", features_only=True, in_chans=4, channels=(32, 64, 128, 256))

which returns one feature map per stage and a ``feature_info`` naming them (``stages.0`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn


def _conv_unit(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ChenVGG(nn.Module):
    """VGG-style encoder: ``len(channels)`` stages, stage ``i`` at stride ``2**i``."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        in_chans: int = 4,
        num_classes: int = 0,
        global_pool: str = "avg",
    ):
        super().__init__()
        if not channels:
            raise ValueError("chen_vgg needs at least one stage in 'channels'")
        self.num_classes = num_classes
        self.in_chans = in_chans
        stages = []
        previous = in_chans
        self.feature_info = []
        for index, width in enumerate(channels):
            layers = [] if index == 0 else [nn.MaxPool2d(2)]
            layers += [_conv_unit(previous, width), _conv_unit(width, width)]
            stages.append(nn.Sequential(*layers))
            self.feature_info.append(dict(num_chs=width, reduction=2**index, module=f"stages.{index}"))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.num_features = previous
        self.global_pool = nn.AdaptiveAvgPool2d(1) if global_pool == "avg" else nn.Identity()
        self.head = nn.Linear(previous, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.global_pool(self.forward_features(x)), 1))


default_cfgs = generate_default_cfgs(
    {"chen_vgg.untrained": dict(url="", num_classes=0, input_size=(4, 64, 64), mean=(0.0,) * 4, std=(1.0,) * 4)}
)


@register_model
def chen_vgg(pretrained: bool = False, **kwargs) -> ChenVGG:
    """Chen et al. (2019) VGG-like analysis part; no pretrained weights exist (the suite makes them)."""
    if pretrained:
        raise ValueError("chen_vgg has no published pretrained weights; pretrain it with a pretext task")
    channels = kwargs.get("channels", (32, 64, 128, 256))
    return build_model_with_cfg(
        ChenVGG,
        "chen_vgg",
        pretrained=False,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(len(channels)))),
        **kwargs,
    )
