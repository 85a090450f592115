"""Networks shared by pretext and downstream tasks: timm encoders, a U-Net decoder, weight transfer."""

from ssl_medbench.networks import vgg_encoder  # noqa: F401  (registers ``chen_vgg`` with timm)
from ssl_medbench.networks.encoder import EncoderConfig, create_encoder
from ssl_medbench.networks.unet_decoder import UNetDecoder

__all__ = ["EncoderConfig", "UNetDecoder", "create_encoder"]
