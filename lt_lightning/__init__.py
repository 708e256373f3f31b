"""lt-lightning: lottery-ticket experiments (iterative magnitude pruning with rewinding) as Lightning callbacks.

The callbacks are imported on first use, so that the torch-only core (``lt_lightning.masks``, ``.pruning``, ``.ticket``,
...) never imports lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see of the lazy names below (kept equal to _EXPORTS by a test)
    from lt_lightning.callbacks import BaseMaskingCallback as BaseMaskingCallback
    from lt_lightning.callbacks import BasisCallback as BasisCallback
    from lt_lightning.callbacks import DataOrderCallback as DataOrderCallback
    from lt_lightning.callbacks import EarlyBirdCallback as EarlyBirdCallback
    from lt_lightning.callbacks import GMPCallback as GMPCallback
    from lt_lightning.callbacks import IMPCallback as IMPCallback
    from lt_lightning.callbacks import MaskingCallback as MaskingCallback
    from lt_lightning.callbacks import PruneAtInitCallback as PruneAtInitCallback
    from lt_lightning.callbacks import RecordCallback as RecordCallback
    from lt_lightning.callbacks import RewindCallback as RewindCallback
    from lt_lightning.callbacks import RigLCallback as RigLCallback
    from lt_lightning.callbacks import SETCallback as SETCallback
    from lt_lightning.callbacks import SnapshotCallback as SnapshotCallback
    from lt_lightning.callbacks import SupermaskCallback as SupermaskCallback
    from lt_lightning.callbacks import TrainFromCallback as TrainFromCallback
    from lt_lightning.masks import Masks as Masks
    from lt_lightning.masks import select_parameters as select_parameters
    from lt_lightning.pruning.spec import PruningSpec as PruningSpec
    from lt_lightning.records import RoundRecord as RoundRecord
    from lt_lightning.step import Step as Step
    from lt_lightning.ticket import Ticket as Ticket
    from lt_lightning.ticket import apply_ticket as apply_ticket
    from lt_lightning.ticket import load_ticket as load_ticket

__version__ = "0.2.0.dev0"

_EXPORTS = {
    "BaseMaskingCallback": "lt_lightning.callbacks",
    "BasisCallback": "lt_lightning.callbacks",
    "DataOrderCallback": "lt_lightning.callbacks",
    "SnapshotCallback": "lt_lightning.callbacks",
    "TrainFromCallback": "lt_lightning.callbacks",
    "EarlyBirdCallback": "lt_lightning.callbacks",
    "GMPCallback": "lt_lightning.callbacks",
    "IMPCallback": "lt_lightning.callbacks",
    "MaskingCallback": "lt_lightning.callbacks",
    "PruneAtInitCallback": "lt_lightning.callbacks",
    "RecordCallback": "lt_lightning.callbacks",
    "RewindCallback": "lt_lightning.callbacks",
    "RigLCallback": "lt_lightning.callbacks",
    "SETCallback": "lt_lightning.callbacks",
    "SupermaskCallback": "lt_lightning.callbacks",
    "Masks": "lt_lightning.masks",
    "select_parameters": "lt_lightning.masks",
    "PruningSpec": "lt_lightning.pruning.spec",
    "RoundRecord": "lt_lightning.records",
    "Step": "lt_lightning.step",
    "Ticket": "lt_lightning.ticket",
    "apply_ticket": "lt_lightning.ticket",
    "load_ticket": "lt_lightning.ticket",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lt_lightning' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
