"""The VGG-like analysis part of Chen et al. (2019)'s 2D U-Net, registered as the timm models ``chen_vgg`` (2D) and
``chen_vgg3d`` (its 3D counterpart).

Each stage is two 3x3 conv + batch-norm + ReLU units; every stage after the first starts with a
2x2 max-pool (the "down-sampling units" of the paper's Fig. 3). ``chen_vgg3d`` is the same network with 3x3x3
convolutions, 3D batch norm and 2x2x2 max-pools, the encoder of the 3D U-Net (Cicek et al. 2016, "3D U-Net:
learning dense volumetric segmentation from sparse annotation") that the 3D SSL suites pretrain (Taleb et al. 2020;
Zhou et al.'s Models Genesis). Create them only through timm::

    timm.create_model("chen_vgg", features_only=True, in_chans=4, channels=(32, 64, 128, 256))

which returns one feature map per stage and a ``feature_info`` naming them (``stages.0`` ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

#: Per number of spatial dimensions: (convolution, transposed convolution, batch norm, max-pool, adaptive average pool).
LAYERS = {
    2: (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
    3: (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d),
}


def layers_for(spatial_dims: int) -> tuple[type[nn.Module], ...]:
    """The layer classes of :data:`LAYERS` for 2D or 3D networks; ValueError for any other number of dimensions."""
    if spatial_dims not in LAYERS:
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return LAYERS[spatial_dims]


def _conv_unit(in_channels: int, out_channels: int, spatial_dims: int = 2) -> nn.Sequential:
    conv, _, norm, _, _ = layers_for(spatial_dims)
    return nn.Sequential(
        conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
    )


class ChenVGG(nn.Module):
    """VGG-style encoder: ``len(channels)`` stages, stage ``i`` at stride ``2**i``, on 2D or 3D inputs."""

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128, 256),
        in_chans: int = 4,
        num_classes: int = 0,
        global_pool: str = "avg",
        spatial_dims: int = 2,
    ):
        super().__init__()
        _, _, _, max_pool, average_pool = layers_for(spatial_dims)
        self.spatial_dims = spatial_dims
        if not channels:
            raise ValueError("chen_vgg needs at least one stage in 'channels'")
        self.num_classes = num_classes
        self.in_chans = in_chans
        stages = []
        previous = in_chans
        self.feature_info = []
        for index, width in enumerate(channels):
            layers = [] if index == 0 else [max_pool(2)]
            layers += [_conv_unit(previous, width, spatial_dims), _conv_unit(width, width, spatial_dims)]
            stages.append(nn.Sequential(*layers))
            self.feature_info.append(dict(num_chs=width, reduction=2**index, module=f"stages.{index}"))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.num_features = previous
        self.global_pool = average_pool(1) if global_pool == "avg" else nn.Identity()
        self.head = nn.Linear(previous, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.global_pool(self.forward_features(x)), 1))


default_cfgs = generate_default_cfgs(
    {
        "chen_vgg.untrained": dict(url="", num_classes=0, input_size=(4, 64, 64), mean=(0.0,) * 4, std=(1.0,) * 4),
        # no input_size: timm's configs describe (C, H, W) images only
        "chen_vgg3d.untrained": dict(url="", num_classes=0),
    }
)


def _build(variant: str, pretrained: bool, dims: int, /, **kwargs) -> ChenVGG:
    if pretrained:
        raise ValueError(f"{variant} has no published pretrained weights; pretrain it with a pretext task")
    if "spatial_dims" in kwargs:
        raise ValueError(
            f"{variant} is {dims}D by its name: remove spatial_dims from encoder.kwargs (chen_vgg is the 2D network, "
            "chen_vgg3d the 3D one)"
        )
    channels = kwargs.get("channels", (32, 64, 128, 256))
    return build_model_with_cfg(
        ChenVGG,
        variant,
        pretrained=False,
        feature_cfg=dict(flatten_sequential=True, out_indices=tuple(range(len(channels)))),
        spatial_dims=dims,
        **kwargs,
    )


@register_model
def chen_vgg(pretrained: bool = False, **kwargs) -> ChenVGG:
    """Chen et al. (2019) VGG-like analysis part; no pretrained weights exist (the suite makes them)."""
    return _build("chen_vgg", pretrained, 2, **kwargs)


@register_model
def chen_vgg3d(pretrained: bool = False, **kwargs) -> ChenVGG:
    """The 3D counterpart of ``chen_vgg`` (3x3x3 convolutions, 2x2x2 max-pools): a 3D U-Net's analysis part."""
    return _build("chen_vgg3d", pretrained, 3, **kwargs)
