"""sar_torch_ref: the original PyTorch design of the SAR autoencoder, kept as a parity reference.

Module and attribute names define the state_dict keys that the JAX converter maps one to one.
Training: ``python -m sar_torch_ref.train --config NAME`` or
:func:`sar_torch_ref.training.trainer.train_and_evaluate`.
"""

from sar_torch_ref.losses import CombinedLoss
from sar_torch_ref.models import SARAutoencoder

__all__ = ["CombinedLoss", "SARAutoencoder"]
