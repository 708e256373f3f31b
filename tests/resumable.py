"""Pieces for tests that kill a fit and resume it: a loader resumable mid-epoch, and callbacks that checkpoint at
chosen steps or crash there."""

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import TensorDataset

from lt_lightning.zoo import DigitsDataModule


class ResumableLoader:
    """Batches of a fixed dataset in a per-epoch seeded order, resumable mid-epoch (Lightning's ``_Stateful``):
    the loader that bitwise-identical mid-epoch resumption needs."""

    def __init__(self, dataset, batch_size, seed=0):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.epoch, self.yielded, self._skip = 0, 0, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        self.yielded, self._skip = self._skip, 0
        while self.yielded < len(self):
            idx = order[self.yielded * self.batch_size:(self.yielded + 1) * self.batch_size]
            self.yielded += 1
            yield self.dataset[idx]

    def state_dict(self):
        return {"epoch": self.epoch, "yielded": self.yielded}

    def load_state_dict(self, state):
        self.epoch, self._skip = state["epoch"], state["yielded"]


class ResumableDigits(DigitsDataModule):
    def train_dataloader(self):
        x, y = self.train_set.tensors
        return ResumableLoader(TensorDataset(x, y), self.batch_size)


class SaveAt(Callback):
    """Saves a real Lightning checkpoint at the end of chosen optimizer steps, as ModelCheckpoint would."""

    def __init__(self, root, steps):
        self.root, self.steps = root, set(steps)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step in self.steps:
            trainer.save_checkpoint(self.root / "ckpt" / f"step={trainer.global_step}.ckpt")


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("injected crash")


