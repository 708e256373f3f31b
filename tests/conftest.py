"""Shared test pieces: a small real classifier on scikit-learn's 8x8 digits, and a Trainer factory."""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger

from lt_lightning.zoo import Classifier, DigitsDataModule

# Scripts run as separate processes (DDP); importing them here would run their registrations twice.
collect_ignore_glob = ["callbacks/ddp_*.py", "conformance/ddp_*.py"]

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def run_cli(argv):
    """``lt-lightning ARGV`` in this process; its exit status. ``sys.argv`` is cleared meanwhile: LightningCLI warns
    when it is given arguments and the process has a command line of its own (pytest's)."""
    from lt_lightning.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lt-lightning"])
        return main(argv)


def digits_model(**kwargs) -> Classifier:
    kwargs.setdefault("model_kwargs", {"in_features": 64, "hidden": [32, 16], "num_classes": 10})
    return Classifier(model="mlp", **kwargs)


def make_trainer(root, callbacks=(), **kwargs) -> pl.Trainer:
    kwargs.setdefault("max_epochs", 2)
    kwargs.setdefault("logger", CSVLogger(str(root), name="run"))
    kwargs.setdefault("enable_checkpointing", False)
    kwargs.setdefault("enable_progress_bar", False)
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        default_root_dir=str(root),
        callbacks=list(callbacks),
        enable_model_summary=False,
        deterministic=True,
        **kwargs,
    )


@pytest.fixture
def datamodule():
    return DigitsDataModule(batch_size=64, seed=0)


@pytest.fixture(autouse=True)
def _seed():
    pl.seed_everything(0, verbose=False)
    torch.use_deterministic_algorithms(False)
