"""Run by test_prune_at_init.py as a script: SNIP at initialization under DDP on CPU, 2 processes, gloo.

Each rank sees other data, so SNIP masks that each rank computed on its own first batch differ: each rank saves those
(``local``) next to the callback's masks, which must be rank zero's ``local`` masks on every rank.
"""

import os
import sys

import lightning.pytorch as pl
import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import digits_model

from lt_lightning import PruneAtInitCallback
from lt_lightning.masks import Masks
from lt_lightning.pruning import ScoreContext, prune
from lt_lightning.zoo import DigitsDataModule


class LocalSnip(pl.Callback):
    """Before the callback under test: the SNIP masks of this rank's own first training batch."""

    def __init__(self, names):
        self.names, self.masks = names, None

    def on_train_start(self, trainer, pl_module):
        x, y = next(iter(trainer.train_dataloader))
        context = ScoreContext(pl_module, Masks.dense(pl_module, self.names), batches=[(x, y)],
                               loss_fn=lambda module, batch: F.cross_entropy(module(batch[0]), batch[1]))
        self.masks = prune(context, 0.1, score="snip")


def main(out: str) -> None:
    pl.seed_everything(0, verbose=False)
    local = LocalSnip(["model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"])
    callback = PruneAtInitCallback(method="snip", density=0.1)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_steps=3, callbacks=[local, callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    torch.save({"masks": callback.masks.pack(), "local": local.masks.pack(), "state_dict": model.state_dict()},
               os.path.join(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
