"""What the callbacks need to read from, or tell, a Lightning Trainer. Lightning-only glue, shared by the callbacks."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_only

_SUPPORTED = "single device (CPU, GPU, MPS) and DDP (strategy='ddp', 'ddp_spawn', 'ddp_find_unused_parameters_true')"
# DeepSpeed subclasses DDPStrategy but shards optimizer state and parameters, so names are checked too.
_SHARDED = {"DeepSpeedStrategy", "FSDPStrategy", "ModelParallelStrategy", "XLAStrategy", "XLAFSDPStrategy"}


def check_strategy(trainer: pl.Trainer, who: str) -> None:
    """Raise before training if the strategy shards parameters: masks and snapshots need whole tensors."""
    strategy = trainer.strategy
    names = {cls.__name__ for cls in type(strategy).__mro__}
    if names & _SHARDED or not isinstance(strategy, (SingleDeviceStrategy, DDPStrategy)):
        raise ValueError(f"{who} does not support strategy {type(strategy).__name__}; supported: {_SUPPORTED}.")


@dataclass(frozen=True)
class TrainingLength:
    """The length the user configured for one training, read before any callback extends the fit."""

    max_epochs: int | None
    max_steps: int

    @classmethod
    def read(cls, trainer: pl.Trainer) -> TrainingLength:
        return cls(max_epochs=trainer.max_epochs, max_steps=trainer.max_steps)

    def steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps in one training; ``ValueError`` if the configuration sets no finite length."""
        limits = []
        if self.max_steps is not None and self.max_steps >= 0:
            limits.append(self.max_steps)
        if self.max_epochs is not None and self.max_epochs >= 0 and steps_per_epoch < math.inf:
            limits.append(self.max_epochs * int(steps_per_epoch))
        if not limits:
            raise ValueError(
                f"one training has no finite length (max_epochs={self.max_epochs}, max_steps={self.max_steps},"
                " steps per epoch unknown): set max_steps, or max_epochs with a sized train loader."
            )
        return min(limits)

    def __str__(self) -> str:
        return f"max_epochs={self.max_epochs}, max_steps={self.max_steps}"


def steps_per_epoch(trainer: pl.Trainer) -> float:
    """Optimizer steps per epoch (``inf`` for an unsized loader); known from ``on_train_start`` on.

    Lightning steps on every ``accumulate_grad_batches``-th batch and on an epoch's last batch.
    """
    batches = trainer.num_training_batches
    if batches == math.inf:
        return math.inf
    return math.ceil(batches / trainer.accumulate_grad_batches)


def schedulers(trainer: pl.Trainer) -> list[Any]:
    return [config.scheduler for config in trainer.lr_scheduler_configs]


@rank_zero_only
def log_metrics(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    """Send scalars to every attached logger (CSV, TensorBoard, W&B, ...) at the current global step."""
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)


def run_dir(trainer: pl.Trainer, dirpath: str | None) -> str:
    """Where a run's experiment files go: ``dirpath`` if given, else the trainer's log dir (same on all ranks)."""
    path = dirpath if dirpath is not None else (trainer.log_dir or trainer.default_root_dir)
    return os.fspath(trainer.strategy.broadcast(path))
