"""Run by test_ddp.py as a script: IMP under DDP on CPU, 2 processes, gloo. Each rank saves what it ended with.

A score seeded by the rank makes masks that each rank computed on its own differ; identical masks on every rank
show that they were computed once and broadcast.
"""

import os
import sys

import lightning.pytorch as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from conftest import digits_model

from lt_lightning import IMPCallback, RewindCallback
from lt_lightning.pruning import register_score
from lt_lightning.zoo import DigitsDataModule


@register_score("rank_seeded")
def rank_seeded(context):
    generator = torch.Generator().manual_seed(1000 + int(os.environ.get("LOCAL_RANK", 0)))
    return {n: torch.rand(p.shape, generator=generator) for n, p in context.parameters().items()}


@register_score("fails_on_rank_zero")
def fails_on_rank_zero(context):
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        raise ValueError("injected failure while pruning")
    return {n: p.detach().abs() for n, p in context.parameters().items()}


def main(out: str, score: str) -> None:
    pl.seed_everything(0, verbose=False)
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, score=score, dirpath=out)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, callbacks=[RewindCallback(step=3), imp],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True,
    )
    model = digits_model(optimizer="sgd", lr=0.1)
    trainer.fit(model, DigitsDataModule(batch_size=32))
    torch.save(
        {"masks": imp.masks.pack(), "history": [{k: v for k, v in h.items() if k != "wall_time_s"} for h in imp.history],
         "state_dict": model.state_dict(), "global_step": trainer.global_step},
        os.path.join(out, f"rank{trainer.global_rank}.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
