"""lt-lightning: lottery-ticket experiments (iterative magnitude pruning with rewinding) as Lightning callbacks."""

from lt_lightning.callbacks import IMPCallback, MaskingCallback, PruneAtInitCallback, RewindCallback
from lt_lightning.masks import Masks, select_parameters
from lt_lightning.step import Step
from lt_lightning.ticket import Ticket, apply_ticket, load_ticket

__version__ = "0.1.0"

__all__ = [
    "IMPCallback",
    "MaskingCallback",
    "Masks",
    "PruneAtInitCallback",
    "RewindCallback",
    "Step",
    "Ticket",
    "apply_ticket",
    "load_ticket",
    "select_parameters",
]
