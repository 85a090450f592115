"""Create encoders the one way the suite allows: ``timm.create_model(name, features_only=True, in_chans=C)``.

Weights are exported and loaded on the module this returns, so the state-dict key names (the
``features_only`` wrapper turns ``stages.0.*`` into ``stages_0.*``) are the same on both sides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import timm
from torch import nn

from ssl_medbench.core.errors import ConfigError


@dataclass(frozen=True)
class EncoderConfig:
    """Which timm model is the encoder, with its constructor arguments (e.g. ``channels`` for chen_vgg)."""

    name: str = "chen_vgg"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"channels": [32, 64, 128, 256]})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spatial_dims_of(network: nn.Module) -> int:
    """2 or 3: the spatial dimensions of the inputs ``network`` takes, read from its first convolution."""
    for module in network.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            return 3
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            return 2
    raise ValueError(f"{type(network).__name__} has no 2D or 3D convolution to tell its spatial dimensions by")


def create_encoder(config: EncoderConfig, in_chans: int) -> nn.Module:
    """A features-only timm model: ``forward(x)`` returns one feature map per stage, shallow to deep."""
    if config.name not in timm.list_models(config.name):
        raise ConfigError(f"encoder.name: {config.name!r} is not a timm model name")
    kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in config.kwargs.items()}
    try:
        return timm.create_model(config.name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs)
    except TypeError as error:
        raise ConfigError(f"encoder.kwargs: {config.name} does not accept {config.kwargs}: {error}") from None
