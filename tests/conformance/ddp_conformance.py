"""Run by test_ddp_conformance.py as a script: every method of ``METHODS`` under DDP on CPU, 2 processes, gloo, one
launch for all of them. Each rank builds its module from its own seed (DDP then broadcasts rank zero's weights) and
trains on its own shard of the data; each saves the masks and weights it ended with per method."""

import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conformance.methods import METHODS, digits_model, masking_callback
from lt_lightning.zoo import DigitsDataModule


def main(out: str) -> None:
    ended = {}
    for method in METHODS:
        root = os.path.join(out, method.name)
        pl.seed_everything(0, verbose=False)
        callbacks = method.callbacks(root)
        trainer = pl.Trainer(
            accelerator="cpu", devices=2, strategy="ddp", max_epochs=None, max_steps=method.steps,
            callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=2, default_root_dir=root, **method.trainer,
        )
        torch.manual_seed(1000 + trainer.global_rank)
        model = digits_model()
        trainer.fit(model, DigitsDataModule(batch_size=32))
        ended[method.name] = {"masks": masking_callback(callbacks).masks.pack(), "state_dict": model.state_dict(),
                              "global_step": trainer.global_step}
    torch.save(ended, os.path.join(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
