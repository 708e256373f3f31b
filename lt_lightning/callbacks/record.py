"""RecordCallback: what one training (a ticket's, a control's) reached, written to a file when the fit ends."""

from __future__ import annotations

import os
import time
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lt_lightning.callbacks import _trainer as lt_trainer
from lt_lightning.callbacks._trainer import TrainingLength, steps_per_epoch
from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.callbacks.imp import IMPCallback
from lt_lightning.callbacks.masking import MaskingCallback
from lt_lightning.records import MetricTracker, Mode, RoundRecord, write_result


class RecordCallback(Callback):
    """Write the record of this fit's one training to ``path`` (JSON, :func:`lt_lightning.records.read_result`)
    when it ends: the final and best value of every scalar the module logs, the step where ``monitor`` was best
    (the early-stopping iteration), the density of the masks of the Trainer's masking callback (1 without one),
    the wall time, and with a :class:`MaskingCallback` the ticket, its round and the control and seed trained.

    As IMP does at a round's end, the training is validated after its last step when the validation schedule does
    not fall there (``max_steps`` mid-epoch, ``val_check_interval`` that does not divide it), so that the final
    metrics are those of the network the training ended with. IMP runs record their rounds themselves
    (``imp_history.json``): the two are refused together.

    Args:
        path: the JSON file to write (folders are created).
        monitor, mode: the metric whose best value marks ``best_step``, and its direction.
        modes: directions of other metrics, ``{name: "min" | "max"}``; the rest are minimised when their name holds
            "loss" or "err" and maximised otherwise.
    """

    def __init__(self, path: str, monitor: str = "val_loss", mode: Mode = "min",
                 modes: dict[str, Mode] | None = None) -> None:
        if not isinstance(path, str) or not path or os.path.isdir(path):
            raise ValueError(f"path={path!r} is not allowed; expected the path of a JSON file to write.")
        self.tracker = MetricTracker(monitor, mode, modes)  # checks mode and modes
        self.path = path
        self.monitor = monitor
        self.record: RoundRecord | None = None
        self._end: int | None = None
        self._started = 0.0
        self._elapsed = 0.0  # time trained before a resume

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if any(isinstance(c, IMPCallback) for c in lt_trainer.callbacks_of(trainer)):
            raise ValueError("RecordCallback records one training; this Trainer has an IMPCallback, which records its"
                             " rounds in imp_history.json: remove the RecordCallback.")
        self._length = TrainingLength.read(trainer)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.perf_counter()
        try:
            self._end = self._length.steps(steps_per_epoch(trainer))
        except ValueError:  # no finite length: nothing to validate at, the fit ends where it is stopped
            self._end = None
        lt_trainer.validate_also_when(trainer, lambda: trainer.global_step == self._end)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self.tracker.observe(_scalars(trainer.callback_metrics), trainer.global_step)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lt_trainer.release_loops(trainer, pl_module)
        self.tracker.observe(_scalars(trainer.callback_metrics), trainer.global_step)  # train metrics too
        if self.monitor not in self.tracker.final:
            rank_zero_warn(f"lt-lightning: monitor={self.monitor!r} was never logged in this training, so best_step"
                           f" stays empty; logged metrics: {sorted(self.tracker.final)}. Set RecordCallback(monitor=...).")
        masking = [c for c in lt_trainer.callbacks_of(trainer) if isinstance(c, BaseMaskingCallback) and c.masks is not None]
        masks = masking[0].masks if masking else None
        metadata: dict[str, Any] = {}
        ticket = None
        if masking and isinstance(masking[0], MaskingCallback):
            source = masking[0]
            ticket = source.ticket
            metadata = {"ticket": ticket, "ticket_round": source.ticket_metadata.get("round"),
                        "control": source.control, "control_seed": source.seed if source.control else None}
        step = trainer.global_step
        record = RoundRecord(
            round=metadata.get("ticket_round") or 0,
            density=masks.density() if masks is not None else 1.0,
            layer_density=masks.layer_densities() if masks is not None else {},
            train_steps=step,
            stopped_step=step,
            stopped_early=self._end is not None and step < self._end,
            final=dict(self.tracker.final),
            best=dict(self.tracker.best),
            monitor=self.monitor,
            mode=self.tracker.mode(self.monitor),
            best_step=self.tracker.best_step,
            wall_time_s=self._elapsed + time.perf_counter() - self._started,
            ticket=ticket,
        )
        # Metrics logged without sync_dist differ between ranks: every rank keeps rank zero's record.
        self.record = trainer.strategy.broadcast(record, src=0)
        if trainer.is_global_zero:
            write_result(self.path, self.record, metadata)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        lt_trainer.release_loops(trainer, pl_module)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.state_dict(), "elapsed": self._elapsed + time.perf_counter() - self._started}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tracker.load_state_dict(state_dict["tracker"])
        self._elapsed = state_dict["elapsed"]


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The one-number entries of Lightning's logged metrics (a logged tensor may hold several)."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}
