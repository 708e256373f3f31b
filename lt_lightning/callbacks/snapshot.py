"""SnapshotCallback: save the training state at chosen steps of one training, then end the fit: the shared start
of the copies of an instability analysis (Frankle et al. 2020)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lt_lightning.callbacks import _trainer as lt_trainer
from lt_lightning.callbacks._trainer import TrainingLength, schedulers, steps_per_epoch
from lt_lightning.state import Snapshot, save_snapshot, snapshot_file
from lt_lightning.step import Step


class SnapshotCallback(Callback):
    """Save the training state after each of ``steps`` optimizer steps to :func:`snapshot_file` in ``dirpath``,
    and end the fit once the last is saved.

    Each state is taken where :class:`~lt_lightning.RewindCallback` takes its snapshot (at the start of the batch
    after ``k`` steps, so that step- and epoch-interval schedulers have been stepped for them), so it is the state
    an IMP run rewinds to. The steps are checked against one training (``max_steps``/``max_epochs``) when training
    starts, before any optimizer step. Rank zero writes the files; every rank has them when the fit returns.

    >>> SnapshotCallback(steps=[], dirpath="start")
    Traceback (most recent call last):
    ValueError: steps=[] is empty; name at least one step (an int, '500it', '2ep', ...).

    Args:
        steps: optimizer steps as ints, or ``"500it"``, ``"2ep"``, ``"1ep50it"``.
        dirpath: folder for the state files.
    """

    def __init__(self, steps: list[int | str], dirpath: str) -> None:
        if not isinstance(steps, (list, tuple)) or not steps:
            raise ValueError(f"steps={steps!r} is empty; name at least one step (an int, '500it', '2ep', ...).")
        if not isinstance(dirpath, str) or not dirpath:
            raise ValueError(f"dirpath={dirpath!r} is not allowed; expected a folder path.")
        self.steps = [Step.parse(s) for s in steps]
        self.dirpath = dirpath
        self._pending: dict[int, list[Step]] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._length = TrainingLength.read(trainer)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != 0:
            raise ValueError(f"SnapshotCallback saves states of a training from its start; this fit resumes at global"
                             f" step {trainer.global_step}.")
        length, resolved = self._length.steps(steps_per_epoch(trainer)), resolve_steps(trainer, self.steps)
        for step, count in zip(self.steps, resolved):
            if count >= length:
                raise ValueError(f"step {str(step)!r} (= {count} optimizer steps) is not inside one training of"
                                 f" {length} steps ({self._length}); allowed: 0 to {length - 1} steps.")
        self._pending = {}
        for step, count in zip(self.steps, resolved):
            self._pending.setdefault(count, []).append(step)
        # The state at the last step is taken at the start of the batch after it: that batch is the fit's last.
        lt_trainer.set_fit_length(trainer, max_steps=max(resolved) + 1, max_epochs=-1)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        names = self._pending.pop(trainer.global_step, None)
        if names is None or not trainer.is_global_zero:
            return
        snapshot = Snapshot.capture(pl_module, trainer.optimizers, schedulers(trainer), step=trainer.global_step,
                                    epoch=trainer.current_epoch)
        for step in names:
            save_snapshot(snapshot, snapshot_file(self.dirpath, step))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.strategy.barrier("SnapshotCallback")  # every rank may read the files once the fit returns
        if self._pending:
            missing = [str(s) for names in self._pending.values() for s in names]
            raise RuntimeError(f"the fit ended at global step {trainer.global_step} before the states at {missing}"
                               " were saved: something else stopped it (EarlyStopping, max_time?).")


def resolve_steps(trainer: pl.Trainer, steps: list[Step]) -> list[int]:
    """``steps`` in optimizer steps of this trainer (from ``on_train_start`` on, when steps per epoch are known)."""
    per_epoch = steps_per_epoch(trainer)
    if any(s.epochs for s in steps) and per_epoch == float("inf"):
        raise ValueError(f"steps {[str(s) for s in steps if s.epochs]} count epochs, but the train loader has no"
                         " length; use 'Nit'.")
    return [s.to_steps(int(per_epoch) if s.epochs else 1) for s in steps]
