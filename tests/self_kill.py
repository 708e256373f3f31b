"""A callback that kills its own process with SIGKILL at a given step: a job dying without a word, for launcher
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
