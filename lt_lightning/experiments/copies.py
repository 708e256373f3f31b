"""Callbacks that turn a plain fit into one *copy* of the instability analysis (Frankle et al. 2020): the state at
step ``k`` of a training is saved once (:class:`SnapshotCallback`); each copy starts from it
(:class:`TrainFromCallback`), shuffles its training data with a seed of its own (:class:`DataOrderCallback`),
trains the rest of one training and leaves its end weights on disk. All three are YAML-writable, so each copy is
an ordinary ``lt-lightning fit --config copy.yaml`` that any launcher can run.

State files (:func:`save_snapshot`, :func:`load_snapshot`) hold a :class:`~lt_lightning.state.Snapshot`: weights
and buffers, optimizer and LR-scheduler states, the step and epoch. Like Lightning checkpoints, they are loaded with
``weights_only=False`` (scheduler states may hold any picklable value): load only files you trust.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, DistributedSampler
from typing_extensions import override

from lt_lightning.callbacks import _trainer as lt_trainer
from lt_lightning.callbacks._trainer import TrainingLength, schedulers, steps_per_epoch
from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.files import atomic_torch_save
from lt_lightning.state import Snapshot, to_cpu
from lt_lightning.step import Step, StepLike

SNAPSHOT_FORMAT = "lt-lightning-snapshot/1"
# seed_everything takes seeds in [0, 2**32); so do torch's CPU generators in effect (their Mersenne twister keeps
# the low 32 bits of a seed). The shuffle of epoch e is drawn from seed + e * _GOLDEN mod 2**32: for each epoch a
# one-to-one map of seeds, so two copies' seeds never give them the same order in the same epoch.
_MAX_SEED = 2**32
_GOLDEN = 0x9E3779B9


def save_snapshot(snapshot: Snapshot, path: str | os.PathLike) -> None:
    """Write ``snapshot`` to ``path`` atomically (parent folders are created)."""
    atomic_torch_save({"format": SNAPSHOT_FORMAT, **snapshot.state_dict()}, path)


def load_snapshot(path: str | os.PathLike) -> Snapshot:
    """Read a file written by :func:`save_snapshot`; ``ValueError`` naming the file if it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"state file {path!r} does not exist.")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path!r} is not an lt-lightning state file (format {SNAPSHOT_FORMAT!r}).")
    return Snapshot.from_state_dict({k: v for k, v in data.items() if k != "format"})


def snapshot_file(dirpath: str | os.PathLike, step: StepLike) -> str:
    """Where :class:`SnapshotCallback` writes the state at ``step``: ``dirpath/step_<step>.pt``, the step spelled as
    in the config (``500it``, ``2ep``), so that the name is known before the fit resolves epochs to steps.

    >>> snapshot_file("start", 500), snapshot_file("start", "2ep")
    ('start/step_500it.pt', 'start/step_2ep.pt')
    """
    return os.path.join(os.fspath(dirpath), f"step_{Step.parse(step)}.pt")


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
        for callback in trainer.callbacks:
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
                                   model=to_cpu(pl_module.state_dict())), self.save_to)
        trainer.strategy.barrier("TrainFromCallback")  # every rank may read save_to once the fit returns

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        lt_trainer.release_loops(trainer, pl_module)


def check_state(module: torch.nn.Module, state: dict[str, Any], where: str) -> None:
    """``ValueError`` unless ``state`` has the entries and shapes of ``module.state_dict()``, naming the first
    difference and ``where`` the state comes from."""
    own = module.state_dict()
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


class DataOrderCallback(Callback):
    """Shuffle the training data with ``seed``: two fits that differ in it see their batches in different orders.

    Single process: every train loader that ``train_dataloader()`` of the datamodule (or of the module) returns gets
    its sampler's generator seeded from ``seed`` and the epoch, also where the datamodule fixes a generator of its
    own. Under DDP Lightning replaces that sampler with a ``DistributedSampler`` seeded by ``seed_everything``
    (``PL_GLOBAL_SEED``) and re-seeded each epoch with ``set_epoch``: there ``seed`` must be the fit's
    ``seed_everything`` (``lt-lightning instability`` writes both), and a mismatch is refused.

    Checked when training starts, before any optimizer step: every train loader must shuffle (a sampler with a
    ``generator``, such as ``RandomSampler``, or a shuffling ``DistributedSampler``) and carry the seed; loaders passed
    to ``fit(train_dataloaders=...)`` cannot be re-seeded and are refused.

    >>> DataOrderCallback(seed=-1)
    Traceback (most recent call last):
    ValueError: seed=-1 is not allowed; expected an int in [0, 2**32) (as seed_everything takes).

    Args:
        seed: the data-order seed.
    """

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed={seed!r} is not allowed; expected an int in [0, 2**32) (as seed_everything takes).")
        self.seed = seed
        self._owner: Any = None
        self._generators: set[int] = set()

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is not None and is_overridden("train_dataloader", datamodule):
            owner = datamodule
        elif is_overridden("train_dataloader", pl_module):
            owner = pl_module
        else:
            raise ValueError(f"DataOrderCallback re-seeds the loaders train_dataloader() returns, and neither"
                             f" {type(pl_module).__name__} nor a datamodule defines it: put the train loader in a"
                             " LightningDataModule (loaders passed to fit() cannot be re-seeded).")
        original = owner.train_dataloader

        def train_dataloader() -> Any:
            loaders = original()
            for loader in _loaders(loaders):
                generator = getattr(_sampler(loader), "generator", _MISSING)
                if generator is not _MISSING:  # RandomSampler, SubsetRandomSampler, WeightedRandomSampler, ...
                    seeded = torch.Generator().manual_seed((self.seed + trainer.current_epoch * _GOLDEN) % _MAX_SEED)
                    _sampler(loader).generator = seeded
                    self._generators.add(id(seeded))
            return loaders

        owner.train_dataloader = train_dataloader
        self._owner = owner

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = list(_loaders(trainer.train_dataloader))
        if not loaders:
            raise ValueError(f"DataOrderCallback shuffles DataLoaders; the train loader is a"
                             f" {type(trainer.train_dataloader).__name__}.")
        for loader in loaders:
            sampler = _sampler(loader)
            if isinstance(sampler, DistributedSampler):
                if not sampler.shuffle:
                    raise ValueError("DataOrderCallback: the train loader's DistributedSampler does not shuffle"
                                     " (the loader was made with shuffle=False?): the data order cannot vary.")
                if sampler.seed != self.seed:
                    raise ValueError(f"DataOrderCallback(seed={self.seed}): under DDP Lightning seeds the train"
                                     f" loader's DistributedSampler with seed_everything's seed, here {sampler.seed}:"
                                     f" set seed_everything: {self.seed} for this fit.")
            elif id(getattr(sampler, "generator", None)) not in self._generators:
                raise ValueError(f"DataOrderCallback cannot seed the train loader's {type(sampler).__name__}: it"
                                 " needs a shuffling sampler with a generator (DataLoader(shuffle=True) makes a"
                                 " RandomSampler) in a loader returned by train_dataloader() of the datamodule or"
                                 " module (loaders passed to fit() cannot be re-seeded).")

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._owner is not None:
            self._owner.__dict__.pop("train_dataloader", None)
            self._owner = None
            self._generators.clear()


_MISSING = object()


def _sampler(loader: DataLoader) -> Any:
    # A DataLoader's sampler, or the one inside its BatchSampler (DataLoader(batch_sampler=BatchSampler(s, ...))).
    return getattr(loader.batch_sampler, "sampler", loader.sampler)


def _loaders(loaders: Any) -> Iterator[DataLoader]:
    """The DataLoaders in what ``train_dataloader()`` may return: one, or a list, tuple or dict of them."""
    if isinstance(loaders, DataLoader):
        yield loaders
    elif isinstance(loaders, dict):
        for value in loaders.values():
            yield from _loaders(value)
    elif isinstance(loaders, (list, tuple)):
        for value in loaders:
            yield from _loaders(value)
