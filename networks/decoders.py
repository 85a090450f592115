"""The reconstruction decoders a pretext task can choose by name."""

from __future__ import annotations

from torch import nn

from ssl_medbench.networks.deconv_decoder import DeconvDecoder
from ssl_medbench.networks.unet_decoder import UNetDecoder

DECODERS = {"unet": UNetDecoder.for_encoder, "deconv": DeconvDecoder.for_encoder}


def build_decoder(name: str, encoder: nn.Module) -> nn.Module:
    """The decoder ``name`` (``unet`` or ``deconv``) for ``encoder``; it has an ``out_channels`` attribute."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}: expected one of {', '.join(DECODERS)}")
    return DECODERS[name](encoder)
