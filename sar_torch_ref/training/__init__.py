"""Training loop and checkpoints of the reference model."""

from sar_torch_ref.training.checkpoint import load_checkpoint, save_checkpoint
from sar_torch_ref.training.trainer import evaluate, train_and_evaluate

__all__ = ["evaluate", "load_checkpoint", "save_checkpoint", "train_and_evaluate"]
