"""Pruning methods on MNIST-1D: IMP against pruning at initialization (SNIP, GraSP, SynFlow) and a random ticket.

For each seed of ``--seeds``, every network starts from the same initialization and trains for ``--steps`` Adam
steps per training, validated once at the end of each training on the 1000-sample test split; the table gives the
mean over seeds and, after ±, the standard deviation.

- IMP: ``IMPCallback`` with global magnitude pruning of ``1 - density_1`` of the remaining weights per round, rewound
  to the initialization (Frankle & Carbin 2019): its rounds reach the densities of the table one after the other.
- SNIP, GraSP, SynFlow: ``PruneAtInitCallback`` with a global threshold, pruning once before the first step (SynFlow
  in 100 iterations).
- Random ticket: random scores with ERK layer densities (``allocation="erk"``), in the spirit of the random tickets
  of Su et al. 2020.

    python examples/compare_methods.py                              # ~3 minutes on 2 cores
    python examples/compare_methods.py --steps 300 --seeds 0        # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch

from lt_lightning import IMPCallback, PruneAtInitCallback, RewindCallback
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.zoo import Classifier, MNIST1DDataModule

AT_INIT = {  # table row -> PruneAtInitCallback arguments
    "SNIP": {"method": "snip"},
    "GraSP": {"method": "grasp"},
    "SynFlow": {"method": "synflow", "iterations": 100},
    "Random ticket (ERK)": {"method": "random", "allocation": "erk"},
}


class FinalAccuracy(L.Callback):
    """The validation accuracy after each validation run."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val_acc"]))


def trainer(args: argparse.Namespace, callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, max_steps=args.steps, val_check_interval=args.steps, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, logger=False, callbacks=callbacks, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, deterministic=True, default_root_dir=args.out,
    )


def model(args: argparse.Namespace, seed: int) -> Classifier:
    L.seed_everything(seed, verbose=False)  # the same initialization for every method
    return Classifier("mlp", {"in_features": 40, "hidden": [100, 100], "num_classes": 10}, optimizer="adam", lr=args.lr)


def run_imp(args: argparse.Namespace, data: MNIST1DDataModule, seed: int) -> list[float]:
    """Dense accuracy, then the accuracy at each density of ``args.densities`` (one IMP round each)."""
    imp = IMPCallback(rounds=len(args.densities), pruning_fraction=1 - args.densities[0], save_tickets=False,
                      dirpath=args.out)
    accuracy = FinalAccuracy()
    trainer(args, [RewindCallback(step=0), imp, accuracy]).fit(model(args, seed), data)
    for record, density in zip(imp.history[1:], args.densities):
        assert abs(record["density"] - density) < 1e-3, (record["density"], density)
    return [r["final"]["val_acc"] for r in imp.history]


def run_at_init(
    args: argparse.Namespace, data: MNIST1DDataModule, seed: int, density: float, **kwargs: object
) -> float:
    accuracy = FinalAccuracy()
    callback = PruneAtInitCallback(density=density, seed=seed, **kwargs)  # type: ignore[arg-type]
    trainer(args, [callback, accuracy]).fit(model(args, seed), data)
    assert abs(callback.masks.density() - density) < 1e-3
    return accuracy.values[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800, help="Adam steps per training (40 steps = 1 epoch)")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 is fastest for these small matmuls")
    parser.add_argument("--out", default="outputs/compare_methods")
    args = parser.parse_args()
    # IMP pruning 75% of the remaining weights per round reaches these after rounds 1, 2, 3.
    args.densities = [0.25, 0.0625, 0.015625]

    started = time.perf_counter()
    quiet(args.threads)
    data = MNIST1DDataModule(batch_size=100, seed=42)

    dense: list[float] = []
    rows: dict[str, list[list[float]]] = {"IMP (magnitude, rewind to init)": [], **{row: [] for row in AT_INIT}}
    for seed in args.seeds:  # rows[method][seed][density]
        imp = run_imp(args, data, seed)
        dense.append(imp[0])
        rows["IMP (magnitude, rewind to init)"].append(imp[1:])
        for row, kwargs in AT_INIT.items():
            rows[row].append([run_at_init(args, data, seed, density, **kwargs) for density in args.densities])

    head = "| method | " + " | ".join(f"{100 * d:.2f}% kept" for d in args.densities) + " |"
    lines = [f"| {row} | " + " | ".join(_cell(list(accs)) for accs in zip(*runs)) + " |" for row, runs in rows.items()]
    print(f"\nMNIST-1D, MLP 40-100-100-10 (15,000 prunable weights), Adam {args.lr}, {args.steps} steps per training:"
          f" val accuracy (%) at the end of training, mean ± std over seeds {args.seeds}. Dense: {_cell(dense)}.\n")
    print("\n".join([head, "|---|" + "---:|" * len(args.densities), *lines]))
    print(f"\nTotal wall time: {time.perf_counter() - started:.0f} s (torch threads {torch.get_num_threads()}).")


def _cell(accuracies: list[float]) -> str:
    mean = 100 * statistics.fmean(accuracies)
    return f"{mean:.1f} ± {100 * statistics.stdev(accuracies):.1f}" if len(accuracies) > 1 else f"{mean:.1f}"


if __name__ == "__main__":
    main()
