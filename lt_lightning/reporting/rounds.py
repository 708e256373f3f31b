"""The built-in round reporter (:mod:`lt_lightning.reports`): each round's scalars to every logger, the W&B views,
the round and density in the progress bar, and one line when a round is recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl

from lt_lightning.callbacks._trainer import log_metrics
from lt_lightning.records import RoundRecord
from lt_lightning.reporting.progress import print_round_summary, show_round
from lt_lightning.reporting.scalars import round_scalars
from lt_lightning.reporting.wandb import log_round_to_wandb
from lt_lightning.reports import register_round_reporter


class LoggerReporter:
    """What every IMP run shows, with any Lightning logger; W&B extras when a WandbLogger is attached."""

    def round_started(self, trainer: pl.Trainer, round_: int, rounds: int, density: float) -> None:
        show_round(trainer, round_, rounds, density)

    def round_finished(self, trainer: pl.Trainer, history: Sequence[RoundRecord], rounds: int) -> None:
        record: Any = history[-1]
        log_metrics(trainer, round_scalars(record))
        log_round_to_wandb(trainer, history)
        print_round_summary(record, rounds)


register_round_reporter(LoggerReporter())
