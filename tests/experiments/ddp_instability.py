"""Run by test_instability.py as a script: the instability analysis under DDP on CPU, 2 processes, gloo. Lightning
re-runs this script for rank 1, so every rank runs the whole analysis; each saves the result it computed."""

import json
import os
import sys

from lt_lightning.experiments.lmc import instability


def main(out: str) -> None:
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_steps": 12, "limit_val_batches": 2,
                    "enable_checkpointing": False, "enable_model_summary": False, "enable_progress_bar": False,
                    "logger": False, "deterministic": True},
        "model": {"class_path": "lt_lightning.zoo.Classifier",
                  "init_args": {"model": "mlp", "optimizer": "sgd", "lr": 0.1,
                                "model_kwargs": {"in_features": 64, "hidden": [32, 16], "num_classes": 10}}},
        "data": {"class_path": "lt_lightning.zoo.DigitsDataModule", "init_args": {"batch_size": 32}},
    }
    result = instability(config, step=2, points=3, out=os.path.join(out, "analysis"))
    with open(os.path.join(out, f"rank{os.environ.get('LOCAL_RANK', '0')}.json"), "w") as f:
        json.dump(result.to_dict(), f)


if __name__ == "__main__":
    main(sys.argv[1])
