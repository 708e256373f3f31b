"""Run by test_rigl.py as a script: RigL under DDP on CPU, 2 processes, gloo. Each rank saves what it ended with.

The updater grows at random positions seeded by the rank, so masks that each rank computed on its own would differ;
identical masks on every rank show that they were computed once and broadcast.
"""

import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import digits_model

from lt_lightning import RigLCallback
from lt_lightning.dynamic import drop_and_grow, register_updater
from lt_lightning.zoo import DigitsDataModule


@register_updater("rank_seeded")
def rank_seeded(masks, weights, grads, fraction, generator):
    own = torch.Generator().manual_seed(1000 + int(os.environ.get("LOCAL_RANK", 0)))
    return drop_and_grow(masks, weights, {n: torch.rand(m.shape, generator=own) for n, m in masks.items()}, fraction)


class RankSeeded(RigLCallback):
    updater = "rank_seeded"


def main(out: str) -> None:
    pl.seed_everything(0, verbose=False)
    callback = RankSeeded(density=0.1, update_every=5, dirpath=out)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, callbacks=[callback], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )
    model = digits_model(optimizer="adam", lr=0.01)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    torch.save({"masks": callback.masks.pack(), "updates": callback.updates, "state_dict": model.state_dict()},
               os.path.join(out, f"rank{trainer.global_rank}.pt"))


if __name__ == "__main__":
    main(sys.argv[1])
