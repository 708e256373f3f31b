"""RewindCallback: capture the training state at one optimizer step, on CPU, for rewinding (Frankle et al. 2020)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lt_lightning.callbacks._trainer import TrainingLength, schedulers, steps_per_epoch
from lt_lightning.state import Snapshot
from lt_lightning.step import Step


class RewindCallback(Callback):
    """Snapshot weights, buffers, optimizer and LR-scheduler states and counters after exactly ``step`` optimizer
    steps; keep it on CPU and in every checkpoint.

    The snapshot is taken at the start of the first batch after ``step`` optimizer steps, so that every scheduler
    (step- and epoch-interval) has been stepped for them; ``step=0`` is the initialization. Read it from
    :attr:`snapshot`; :class:`~lt_lightning.callbacks.imp.IMPCallback` rewinds to it.

    Args:
        step: optimizer steps as an ``int``, or ``"500it"``, ``"2ep"``, ``"1ep50it"``.
    """

    def __init__(self, step: int | str = 0) -> None:
        self.step = Step.parse(step)
        self.snapshot: Snapshot | None = None
        self._length: TrainingLength | None = None

    @property
    @override
    def state_key(self) -> str:
        # Not keyed by ``step``: a resumed fit that spells the step otherwise ("1ep" for 10) still finds its snapshot;
        # IMPCallback compares the steps they resolve to.
        return "RewindCallback"

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Read now: IMPCallback extends the fit from on_fit_start on. A new fit starts without a snapshot (a resumed
        # one gets its own back from the checkpoint, which Lightning loads after setup).
        self._length = TrainingLength.read(trainer)
        self.snapshot = None

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        legacy = [k for k in checkpoint.get("callbacks", {}) if k.startswith("RewindCallback{")]
        if legacy and self.state_key not in checkpoint["callbacks"]:  # written by lt-lightning 0.1
            self.load_state_dict(checkpoint["callbacks"][legacy[0]])

    def resolve(self, trainer: pl.Trainer) -> int:
        """The rewind point in optimizer steps; ``ValueError`` if it is not inside one training."""
        assert self._length is not None, "resolve() is available from setup on"
        per_epoch = steps_per_epoch(trainer)
        if self.step.epochs and per_epoch == float("inf"):
            raise ValueError(f"step={str(self.step)!r} counts epochs, but the train loader has no length; use 'Nit'.")
        steps = self.step.to_steps(int(per_epoch) if self.step.epochs else 1)
        length = self._length.steps(per_epoch)
        if steps >= length:
            raise ValueError(
                f"rewind step={str(self.step)!r} (= {steps} optimizer steps) is not inside one training of {length}"
                f" steps ({self._length}, {per_epoch} steps per epoch); allowed: 0 to {length - 1} steps."
            )
        return steps

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._target = self.resolve(trainer)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.snapshot is None and trainer.global_step == self._target:
            self.snapshot = Snapshot.capture(
                pl_module, trainer.optimizers, schedulers(trainer), step=trainer.global_step, epoch=trainer.current_epoch
            )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot.state_dict() if self.snapshot is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("snapshot")
        self.snapshot = Snapshot.from_state_dict(saved) if saved is not None else None
