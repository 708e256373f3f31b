"""Run by test_supermask.py as a script: SupermaskCallback under DDP on CPU, 2 processes, gloo.

Each rank builds its module from its own seed (weight_init="module"), so identical weights, scores and masks at the end
show that rank zero's were broadcast and that every step kept the ranks together.
"""

import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import digits_model

from lt_lightning import SupermaskCallback
from lt_lightning.supermask import frozen_tensors, supermask_layers
from lt_lightning.zoo import DigitsDataModule


class Initial(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.scores = {n: layer.scores.detach().clone() for n, layer in supermask_layers(pl_module).items()}


def main(out: str) -> None:
    rank = int(os.environ.get("LOCAL_RANK", 0))
    pl.seed_everything(rank, verbose=False)
    model = digits_model(optimizer="sgd", lr=0.1)
    own_init = model.model.hidden[0].weight.detach().clone()
    callback, initial = SupermaskCallback(density=0.3, method="biprop", dirpath=out), Initial()
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, callbacks=[callback, initial], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )
    trainer.fit(model, DigitsDataModule(batch_size=32))
    moved = any(not torch.equal(initial.scores[n], layer.scores) for n, layer in supermask_layers(model).items())
    torch.save({"masks": callback.masks.pack(), "state_dict": model.state_dict(), "own_init": own_init,
                "frozen": frozen_tensors(model)["model.hidden.0.weight"], "scores_moved": moved},
               os.path.join(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
