"""Run by test_ddp.py as a script: IMP under ddp_spawn on CPU (2 processes, gloo). The launching process saves
what its own callback objects and model hold after fit."""

import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import digits_model

from lt_lightning import IMPCallback, RewindCallback
from lt_lightning.zoo import DigitsDataModule

if __name__ == "__main__":
    out = sys.argv[1]
    pl.seed_everything(0, verbose=False)
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=out)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=1, callbacks=[RewindCallback(step=3), imp],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    torch.save({"masks": imp.masks.pack(), "history": [h.to_dict() for h in imp.history], "state_dict": model.state_dict()},
               os.path.join(out, "launcher.pt"))
