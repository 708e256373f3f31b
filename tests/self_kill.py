"""Callbacks that end a job on purpose: one that kills its own process with SIGKILL at a given step (a job dying
without a word), one that fails for one seed only; for launcher
tests (tests/experiments/test_launchers.py) that must see it recorded, not hang or take the others down."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillSelf(Callback):
    def __init__(self, at_step: int = 3) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.at_step:
            os.kill(os.getpid(), signal.SIGKILL)


class FailForSeed(Callback):
    """Raises at the start of training when ``seed_everything`` was ``seed``: one seed's run fails, the others not."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed

    def on_train_start(self, trainer, pl_module):
        if os.environ.get("PL_GLOBAL_SEED") == str(self.seed):
            raise RuntimeError(f"failing on purpose for seed {self.seed}")
