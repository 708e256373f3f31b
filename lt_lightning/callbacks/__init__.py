"""Lightning callbacks: they decide *when*; the torch-only core decides *what*."""

from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.callbacks.imp import IMPCallback
from lt_lightning.callbacks.masking import MaskingCallback
from lt_lightning.callbacks.prune_at_init import PruneAtInitCallback
from lt_lightning.callbacks.record import RecordCallback
from lt_lightning.callbacks.rewind import RewindCallback

__all__ = ["BaseMaskingCallback", "IMPCallback", "MaskingCallback", "PruneAtInitCallback", "RecordCallback",
           "RewindCallback"]
