"""The original model (``SARAutoencoder`` = ``Encoder`` + ``Decoder``) and the learned codecs
(``FactorizedPrior``, ``ScaleHyperprior``)."""

from sar_torch_ref.models.autoencoder import SARAutoencoder, init_weights
from sar_torch_ref.models.blocks import ConvBlock, DeconvBlock
from sar_torch_ref.models.compression import FactorizedPrior, ScaleHyperprior
from sar_torch_ref.models.decoder import Decoder
from sar_torch_ref.models.encoder import Encoder
from sar_torch_ref.models.entropy import EntropyBottleneck, GaussianConditional
from sar_torch_ref.models.gdn import GDN, IGDN

__all__ = ["ConvBlock", "DeconvBlock", "Decoder", "Encoder", "EntropyBottleneck", "FactorizedPrior", "GDN",
           "GaussianConditional", "IGDN", "SARAutoencoder", "ScaleHyperprior", "init_weights"]
