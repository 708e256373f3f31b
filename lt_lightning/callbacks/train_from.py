"""TrainFromCallback: start a fit from a saved training state at step k and train the rest of one training, its
epochs lined up with the original's; write the end weights."""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lt_lightning.callbacks import _trainer as lt_trainer
from lt_lightning.callbacks._trainer import TrainingLength, schedulers, steps_per_epoch
from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.masks import plain_state_dict
from lt_lightning.state import Snapshot, load_snapshot, save_snapshot, to_cpu


class TrainFromCallback(Callback):
    """Train the rest of one training from the state in the file ``state`` (at step ``k``), and write the weights
    the fit ends with to ``save_to``.

    When training starts (before any optimizer step) the module gets the state's weights and buffers, the optimizer
    and LR schedulers theirs (a state without optimizer states, such as a ticket's, keeps the fresh ones
    ``configure_optimizers`` made, with a warning), and the fit is set to the ``L - k`` steps one training
    (``max_steps``/``max_epochs``, ``L`` steps) has after ``k``. A state taken mid-epoch first trains the rest of
    that epoch as an epoch of its own, so that epoch-interval schedulers step where they stepped in the original
    training. A masking callback's masks (a ticket's, ``MaskingCallback``) are applied to the loaded weights.

    What differs from the original training: ``trainer.global_step`` and the epoch count start at 0 (loggers' x-axes
    and ``check_val_every_n_epoch`` count the copy's own steps and epochs), and the short first epoch of a state
    taken mid-epoch ends without a validation. A fit that stops before its ``L - k`` steps raises; resuming a copy
    from a Lightning checkpoint is refused (run it again instead).

    Args:
        state: a file written by :func:`save_snapshot` (by :class:`SnapshotCallback`, or ``lt-lightning instability``).
        save_to: the file for the end weights (a state file at step ``L``); ``None`` writes nothing.
    """

    def __init__(self, state: str, save_to: str | None = None) -> None:
        if not isinstance(state, str) or not state:
            raise ValueError(f"state={state!r} is not allowed; expected the path of a state file.")
        if save_to is not None and (not isinstance(save_to, str) or not save_to or os.path.isdir(save_to)):
            raise ValueError(f"save_to={save_to!r} is not allowed; expected the path of a file to write, or None.")
        self.state = state
        self.save_to = save_to
        self._start: Snapshot | None = None
        self._steps = 0
        self._length_steps = 0

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._length = TrainingLength.read(trainer)
        self._start = load_snapshot(self.state)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._start is not None
        if trainer.global_step != 0:
            raise ValueError(f"TrainFromCallback starts a copy afresh; this fit resumes at global step"
                             f" {trainer.global_step}. Run the copy again from its start instead.")
        per_epoch = steps_per_epoch(trainer)
        length, k = self._length.steps(per_epoch), self._start.step
        if k >= length:
            raise ValueError(f"the state in {self.state!r} is at step {k}, not inside one training of {length} steps"
                             f" ({self._length}); allowed: states at steps 0 to {length - 1}.")
        check_state(pl_module, self._start.model, self.state)
        self._start.restore_model(pl_module)
        if self._start.optimizers:
            self._start.restore_optimizers(trainer.optimizers)
            self._start.restore_schedulers(schedulers(trainer))
        else:
            rank_zero_warn(f"lt-lightning: {self.state!r} holds weights only (no optimizer state): training from step"
                           f" {k} starts with the optimizer and LR schedulers as configure_optimizers made them.")
        for callback in lt_trainer.callbacks_of(trainer):
            if isinstance(callback, BaseMaskingCallback) and callback.masks is not None:
                callback.masks.apply_(pl_module)
        self._steps, self._length_steps = length - k, length
        lt_trainer.set_fit_length(trainer, max_steps=self._steps, max_epochs=-1)
        if per_epoch != float("inf") and k % int(per_epoch):
            first = int(per_epoch) - k % int(per_epoch)  # the steps left of the epoch the state was taken in
            lt_trainer.end_epoch_when(
                pl_module, lambda batch_idx: trainer.current_epoch == 0 and batch_idx > 0 and trainer.global_step >= first)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lt_trainer.release_step_schedulers(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._start is not None
        lt_trainer.release_loops(trainer, pl_module)
        if trainer.global_step != self._steps:
            raise RuntimeError(f"the copy stopped after {trainer.global_step} of the {self._steps} steps from step"
                               f" {self._start.step} to the end of one training: something else stopped it"
                               " (EarlyStopping, max_time?); its end weights are not written.")
        if self.save_to is not None and trainer.is_global_zero:
            save_snapshot(Snapshot(step=self._length_steps, epoch=trainer.current_epoch,
                                   model=to_cpu(plain_state_dict(pl_module))), self.save_to)
        trainer.strategy.barrier("TrainFromCallback")  # every rank may read save_to once the fit returns

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        lt_trainer.release_loops(trainer, pl_module)


def check_state(module: torch.nn.Module, state: dict[str, Any], where: str) -> None:
    """``ValueError`` unless ``state`` has the entries and shapes of ``module.state_dict()``, naming the first
    difference and ``where`` the state comes from."""
    own = plain_state_dict(module)
    missing, extra = [k for k in own if k not in state], [k for k in state if k not in own]
    if missing or extra:
        raise ValueError(f"the state from {where} does not fit {type(module).__name__}: it lacks {missing[:5]} and"
                         f" has {extra[:5]}, which the module does not (different architecture or parameter names).")
    for key, value in own.items():
        other = state[key]
        if isinstance(value, torch.Tensor) and tuple(getattr(other, "shape", ())) != tuple(value.shape):
            raise ValueError(f"the state from {where} does not fit {type(module).__name__}: {key!r} has shape"
                             f" {tuple(getattr(other, 'shape', ()))} there and {tuple(value.shape)} in the module"
                             " (different architecture).")
