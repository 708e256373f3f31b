"""What the callbacks tell the presentation layer, as an interface the core defines: the callbacks call the
reporters registered here and never import :mod:`lt_lightning.reporting` themselves.

A reporter is any object with the methods of :class:`RoundReporter`. The built-in one
(:mod:`lt_lightning.reporting.rounds`: logger scalars, W&B views, progress bar, a line per round) is registered the
first time :func:`round_reporters` is called; ``register_round_reporter`` adds others (a dashboard, a notifier).

>>> class Count:
...     def __init__(self):
...         self.finished = 0
...     def round_started(self, trainer, round_, rounds, density):
...         pass
...     def round_finished(self, trainer, history, rounds):
...         self.finished += 1
>>> counter = register_round_reporter(Count())
>>> counter in round_reporters()
True
>>> unregister_round_reporter(counter)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from lt_lightning.records import RoundRecord

#: The presentation layer's reporter, registered on first use (imported by name: the core does not depend on it).
BUILT_IN = "lt_lightning.reporting.rounds"


class RoundReporter(Protocol):
    """Told, on every rank, when an IMP round starts and when it is recorded (``trainer``: the Lightning Trainer;
    reporters decide themselves what to do on rank zero only)."""

    def round_started(self, trainer: Any, round_: int, rounds: int, density: float) -> None: ...

    def round_finished(self, trainer: Any, history: Sequence[RoundRecord], rounds: int) -> None: ...


R = TypeVar("R", bound=RoundReporter)
_REPORTERS: list[RoundReporter] = []
_loaded = False


def register_round_reporter(reporter: R) -> R:
    """Add ``reporter``; it is told about every round from now on."""
    _REPORTERS.append(reporter)
    return reporter


def unregister_round_reporter(reporter: RoundReporter) -> None:
    _REPORTERS.remove(reporter)


def round_reporters() -> list[RoundReporter]:
    """The registered reporters, the built-in one first."""
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module(BUILT_IN)
    return list(_REPORTERS)
