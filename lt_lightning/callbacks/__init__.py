"""Lightning callbacks: they decide *when*; the torch-only core decides *what*."""

from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.callbacks.basis import BasisCallback
from lt_lightning.callbacks.data_order import DataOrderCallback
from lt_lightning.callbacks.early_bird import EarlyBirdCallback
from lt_lightning.callbacks.gmp import GMPCallback
from lt_lightning.callbacks.imp import IMPCallback
from lt_lightning.callbacks.masking import MaskingCallback
from lt_lightning.callbacks.prune_at_init import PruneAtInitCallback
from lt_lightning.callbacks.record import RecordCallback
from lt_lightning.callbacks.rewind import RewindCallback
from lt_lightning.callbacks.rigl import RigLCallback
from lt_lightning.callbacks.snapshot import SnapshotCallback
from lt_lightning.callbacks.sparse_evolutionary import SETCallback
from lt_lightning.callbacks.supermask import SupermaskCallback
from lt_lightning.callbacks.train_from import TrainFromCallback
from lt_lightning.callbacks.updating import MaskUpdateCallback

__all__ = [
    "BaseMaskingCallback", "BasisCallback", "DataOrderCallback", "EarlyBirdCallback", "GMPCallback", "IMPCallback",
    "MaskUpdateCallback", "MaskingCallback", "PruneAtInitCallback", "RecordCallback", "RewindCallback",
    "RigLCallback", "SETCallback", "SnapshotCallback", "SupermaskCallback", "TrainFromCallback"
]
