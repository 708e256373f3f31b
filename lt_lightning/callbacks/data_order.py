"""DataOrderCallback: shuffle the training data with a seed of its own, so that copies of one training differ in
data order only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.utils.data import DataLoader, DistributedSampler
from typing_extensions import override

from lt_lightning.callbacks._trainer import unwrap_train_dataloader, wrap_train_dataloader
from lt_lightning.validation import SEED_RANGE, check_seed

# Seeds are in [0, 2**32) (lt_lightning.validation says why). The shuffle of epoch e is drawn from
# seed + e * _GOLDEN mod 2**32: for each epoch a one-to-one map of seeds, so two copies' seeds never give them the
# same order in the same epoch.
_GOLDEN = 0x9E3779B9


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
        self.seed = check_seed("seed", seed)
        self._owner: Any = None
        self._generators: set[int] = set()

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule  # type: ignore[attr-defined]  # set by the data connector
        if datamodule is not None and is_overridden("train_dataloader", datamodule):
            owner = datamodule
        elif is_overridden("train_dataloader", pl_module):
            owner = pl_module
        else:
            raise ValueError(f"DataOrderCallback re-seeds the loaders train_dataloader() returns, and neither"
                             f" {type(pl_module).__name__} nor a datamodule defines it: put the train loader in a"
                             " LightningDataModule (loaders passed to fit() cannot be re-seeded).")

        def reseeded(loaders: Any) -> Any:
            for loader in _loaders(loaders):
                generator = getattr(_sampler(loader), "generator", _MISSING)
                if generator is not _MISSING:  # RandomSampler, SubsetRandomSampler, WeightedRandomSampler, ...
                    seeded = torch.Generator().manual_seed((self.seed + trainer.current_epoch * _GOLDEN) % SEED_RANGE)
                    _sampler(loader).generator = seeded
                    self._generators.add(id(seeded))
            return loaders

        wrap_train_dataloader(owner, reseeded)
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
            unwrap_train_dataloader(self._owner)
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
