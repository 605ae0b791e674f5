"""The original model: ``SARAutoencoder`` = ``Encoder`` + ``Decoder``."""

from sar_torch_ref.models.autoencoder import SARAutoencoder, init_weights
from sar_torch_ref.models.blocks import ConvBlock, DeconvBlock
from sar_torch_ref.models.decoder import Decoder
from sar_torch_ref.models.encoder import Encoder

__all__ = ["ConvBlock", "DeconvBlock", "Decoder", "Encoder", "SARAutoencoder", "init_weights"]
