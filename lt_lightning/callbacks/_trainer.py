"""What the callbacks need to read from, or tell, a Lightning Trainer: every use of Lightning's private internals
lives in this module, and ``tests/callbacks/test_trainer_internals.py`` fails loudly if Lightning changes them.

Private internals used (checked against lightning 2.4 to 2.6):

- ``trainer.fit_loop.max_epochs`` and ``trainer.fit_loop.epoch_loop.max_steps``: the length of a fit that runs several
  trainings is set after ``configure_optimizers`` has seen one training's length;
- ``trainer.fit_loop.epoch_loop._should_check_val_fx``: also validate at the end of every round;
- the ``done`` properties of ``_FitLoop`` and ``_TrainingEpochLoop``: a stop request (``trainer.should_stop``) is seen
  before the loops act on it, so that it can end a round instead of the experiment;
- ``epoch_loop.batch_progress.is_last_batch``: Lightning validates at an epoch's last batch itself;
- ``Timer._duration``: a time limit would stop the experiment mid-round;
- ``_MultiProcessingLauncher``: under ddp_spawn the launching process gets rank zero's results through a file;
- the documented ``-1`` return of ``LightningModule.on_train_batch_start`` (end the epoch now), installed on the
  module instance for the fit;
- ``configure_model`` found on the module instance by Lightning's ``is_overridden`` (a supermask prepares the module
  right after it, before the optimizer is built);
- ``LRSchedulerConfig.frequency``: a scheduler held for one batch, or frozen (IMP's ``reset="finetune"``);
- ``log``/``log_dict`` shadowed on the module instance: ``training_step`` run outside the loop (pruning at
  initialization scores with its loss) logs nothing;
- ``train_dataloader`` wrapped on the datamodule or module instance: Lightning calls the instance's, so a callback
  re-seeds the loaders it returns (``DataOrderCallback``);
- ``WandbLogger._prefix`` and ``LOGGER_JOIN_CHAR``: the key a logged name gets (``WandbLogger(prefix=...)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_only

# LRSchedulerConfig.frequency this large means "never step" (Lightning steps when (index + 1) % frequency == 0).
NEVER = 2**62

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

    def steps(self, steps_per_epoch: float) -> int:
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


def callbacks_of(trainer: pl.Trainer) -> list[pl.Callback]:
    """The Trainer's callbacks, the list itself (its callback connector sets the attribute, which type checkers do
    not see)."""
    return trainer.callbacks  # type: ignore[attr-defined,no-any-return]


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


# ---------------------------------------------------------------------------------------------- private internals
def set_fit_length(trainer: pl.Trainer, max_steps: int, max_epochs: int) -> None:
    """Make the fit end after ``max_steps`` optimizer steps or ``max_epochs`` epochs (-1: no limit)."""
    trainer.fit_loop.max_epochs = max_epochs
    trainer.fit_loop.epoch_loop.max_steps = max_steps


def validate_also_when(trainer: pl.Trainer, predicate: Callable[[], bool]) -> bool:
    """Make Lightning also validate after an optimizer step when ``predicate()`` is true (and validation is enabled:
    a val loader, ``validation_step`` and ``limit_val_batches > 0``). ``False`` if this Lightning cannot."""
    epoch_loop = trainer.fit_loop.epoch_loop
    should_check = getattr(epoch_loop, "_should_check_val_fx", None)
    if should_check is None:
        return False
    epoch_loop.__dict__.pop("_should_check_val_fx", None)
    should_check = epoch_loop._should_check_val_fx

    def or_when(*args: Any, **kwargs: Any) -> bool:
        return should_check(*args, **kwargs) or (predicate() and trainer.enable_validation)

    epoch_loop._should_check_val_fx = or_when  # type: ignore[method-assign]
    return True


def end_epoch_when(pl_module: pl.LightningModule, predicate: Callable[[int], bool]) -> None:
    """End the current epoch at the start of a batch when ``predicate(batch_idx)`` is true, through the module's
    documented ``on_train_batch_start`` returning ``-1``. Lightning then treats the batch as the epoch's last: it
    steps epoch-interval schedulers (as at a real epoch end) but also step-interval ones, although no optimizer step
    was taken; those are held for that batch and released by :func:`release_step_schedulers`."""
    pl_module.__dict__.pop("on_train_batch_start", None)
    original = pl_module.on_train_batch_start

    def on_train_batch_start(batch: Any, batch_idx: int) -> Any:
        response = original(batch, batch_idx)
        if response != -1 and predicate(batch_idx):
            _hold_step_schedulers(pl_module.trainer)
            return -1
        return response

    pl_module.on_train_batch_start = on_train_batch_start  # type: ignore[method-assign]


def _hold_step_schedulers(trainer: pl.Trainer) -> None:
    for config in trainer.lr_scheduler_configs:
        if config.interval == "step" and config.frequency != NEVER:
            config._lt_held_frequency = config.frequency  # type: ignore[attr-defined]
            config.frequency = NEVER


def release_step_schedulers(trainer: pl.Trainer) -> None:
    for config in trainer.lr_scheduler_configs:
        held = config.__dict__.pop("_lt_held_frequency", None)
        if held is not None:
            config.frequency = held


def freeze_schedulers(trainer: pl.Trainer) -> None:
    """Stop every LR scheduler from stepping for the rest of the fit (the learning rates stay where they are)."""
    for config in trainer.lr_scheduler_configs:
        config.frequency = NEVER


@contextmanager
def silent_logging(pl_module: pl.LightningModule) -> Iterator[None]:
    """``self.log``/``self.log_dict`` are no-ops inside: the module's ``training_step`` can run outside the loop
    (``log`` is refused in ``on_train_start``) without reporting its losses as training metrics. Instance
    attributes shadow the methods and are removed after."""
    pl_module.log = pl_module.log_dict = _ignore  # type: ignore[method-assign]
    try:
        yield
    finally:
        del pl_module.log, pl_module.log_dict


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


def wrap_train_dataloader(owner: pl.LightningModule | pl.LightningDataModule, wrap: Callable[[Any], Any]) -> None:
    """From now on Lightning gets ``wrap(loaders)`` from ``owner.train_dataloader()`` (the datamodule's or module's):
    Lightning calls the method of the instance, where the wrapper is installed. :func:`unwrap_train_dataloader`
    removes it."""
    original = owner.train_dataloader

    def train_dataloader() -> Any:
        return wrap(original())

    owner.train_dataloader = train_dataloader  # type: ignore[method-assign]


def unwrap_train_dataloader(owner: pl.LightningModule | pl.LightningDataModule) -> None:
    owner.__dict__.pop("train_dataloader", None)


def logger_key(logger: Any, name: str) -> str:
    """``name`` as a WandbLogger logs it: ``WandbLogger(prefix=...)`` prefixes every key (the prefix is private)."""
    prefix = getattr(logger, "_prefix", "")
    return f"{prefix}{logger.LOGGER_JOIN_CHAR}{name}" if prefix else name


def after_configure_model(pl_module: pl.LightningModule, action: Callable[[], None]) -> None:
    """Run ``action()`` once, right after the module's ``configure_model`` hook: every layer exists by then (made in
    ``__init__``, ``setup()`` or ``configure_model()``), no checkpoint is restored yet and no optimizer is built.
    Lightning calls the hook only when ``is_overridden`` finds one on the module, and an instance attribute counts:
    the wrapper is installed on the instance (and removed when it runs) whether or not the class overrides it."""
    pl_module.__dict__.pop("configure_model", None)
    original = pl_module.configure_model

    def configure_model() -> None:
        del pl_module.configure_model
        original()
        action()

    pl_module.configure_model = configure_model  # type: ignore[method-assign]


def intercept_stop_requests(trainer: pl.Trainer, handler: Callable[[], None]) -> None:
    """Call ``handler()`` each time the fit and epoch loops ask whether they are done, before they read
    ``trainer.should_stop``: any stop request (EarlyStopping, a callback or the module setting it) is seen there,
    and the handler may withdraw it. The loops' classes are swapped for subclasses for this fit only."""
    for loop in (trainer.fit_loop, trainer.fit_loop.epoch_loop):
        base = type(loop)
        if getattr(base, "_lt_intercepts", False):
            base = base.__bases__[0]
        done = base.done

        def intercepted(self: Any, done: Any = done) -> bool:
            handler()
            return done.fget(self)

        loop.__class__ = type(base.__name__, (base,), {"done": property(intercepted), "_lt_intercepts": True})


def release_loops(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
    """Undo :func:`validate_also_when`, :func:`end_epoch_when` and :func:`intercept_stop_requests`."""
    trainer.fit_loop.epoch_loop.__dict__.pop("_should_check_val_fx", None)
    pl_module.__dict__.pop("on_train_batch_start", None)
    release_step_schedulers(trainer)
    for loop in (trainer.fit_loop, trainer.fit_loop.epoch_loop):
        if getattr(type(loop), "_lt_intercepts", False):
            loop.__class__ = type(loop).__bases__[0]


def clear_callback_metrics(trainer: pl.Trainer) -> None:
    """Forget the metrics logged so far, as at the start of a fit: a new round starts."""
    trainer.callback_metrics.clear()


def at_last_batch(trainer: pl.Trainer) -> bool:
    """Whether the batch just run was the last of the trainer's epoch (Lightning validates there itself)."""
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def check_no_time_limit(trainer: pl.Trainer, who: str) -> None:
    """``max_time`` (Lightning's Timer) stops the fit at a moment that falls in an arbitrary round: refused."""
    for callback in callbacks_of(trainer):
        if type(callback).__name__ == "Timer" and getattr(callback, "_duration", None) is not None:
            raise ValueError(f"{who} cannot run with a time limit (Trainer(max_time=...) or a Timer callback): it"
                             " would stop the experiment in the middle of a round. Limit one training with"
                             " max_epochs or max_steps, and the experiment with rounds or target_density.")


def runs_in_launched_processes(trainer: pl.Trainer) -> bool:
    """Whether the fit runs in processes started for it (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``): what they
    end with does not reach the launching process's objects."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)
