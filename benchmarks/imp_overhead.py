"""Cost of a whole IMP run against the plain dense fits it replaces, in one process, interleaved.

- ``imp``: one ``trainer.fit`` with ``IMPCallback(rounds=R)`` (rewinding to initialization, tickets and history
  written, masks enforced), i.e. ``R + 1`` trainings of ``L`` steps;
- ``dense_fits``: ``R + 1`` plain fits of ``L`` steps, each a fresh model and Trainer, no callback.

Both run LeNet-300-100 (Adam 1.2e-3, batch 60) on MNIST-shaped standard-normal inputs with random labels,
pre-built in memory, without validation, logger, checkpoints or progress bar, on one torch thread. Each
repetition times both in a shuffled order; the table shows the median wall time over repetitions and the ratio of
medians. Target: ``imp`` at most 1.03x ``dense_fits``.

    python benchmarks/imp_overhead.py            # about 3 minutes on 2 CPU cores; --steps 120 shows the per-round cost
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import lightning as L
import torch
from torch.utils.data import DataLoader

from lt_lightning import IMPCallback
from lt_lightning.experiments.configs import quiet_console
from lt_lightning.zoo import Classifier


def make_model(seed: int) -> Classifier:
    torch.manual_seed(seed)
    return Classifier("lenet_300_100", {}, optimizer="adam", lr=1.2e-3)


def make_trainer(steps: int, callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps, callbacks=callbacks, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, num_sanity_val_steps=0)


def run_imp(batches: list, steps: int, rounds: int, folder: str) -> float:
    start = time.perf_counter()
    imp = IMPCallback(rounds=rounds, pruning_fraction=0.2, dirpath=folder)
    make_trainer(steps, [imp]).fit(make_model(0), train_dataloaders=DataLoader(batches, batch_size=None))
    assert len(imp.history) == rounds + 1
    return time.perf_counter() - start


def run_dense_fits(batches: list, steps: int, rounds: int) -> float:
    start = time.perf_counter()
    for r in range(rounds + 1):
        make_trainer(steps, []).fit(make_model(r), train_dataloaders=DataLoader(batches, batch_size=None))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps in one training (L)")
    parser.add_argument("--rounds", type=int, default=3, help="pruning rounds (R)")
    parser.add_argument("--batch-size", type=int, default=60)
    args = parser.parse_args()
    quiet_console(1)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(args.batch_size, 1, 28, 28, generator=generator),
                torch.randint(0, 10, (args.batch_size,), generator=generator)) for _ in range(args.steps)]
    results: dict[str, list[float]] = {"imp": [], "dense_fits": []}
    order = random.Random(0)
    started = time.perf_counter()
    for rep in range(args.reps):
        jobs = list(results)
        order.shuffle(jobs)
        for job in jobs:
            if job == "imp":
                with tempfile.TemporaryDirectory() as folder:
                    results[job].append(run_imp(batches, args.steps, args.rounds, folder))
            else:
                results[job].append(run_dense_fits(batches, args.steps, args.rounds))
        print(f"repetition {rep + 1}/{args.reps} done ({time.perf_counter() - started:.0f} s)", flush=True)
    dense = statistics.median(results["dense_fits"])
    print(f"\nLeNet-300-100, {args.rounds + 1} trainings of {args.steps} steps, batch {args.batch_size}, 1 thread,"
          f" {args.reps} interleaved repetitions.")
    print("| variant | median s | min-max s | ratio to dense fits (of medians) |")
    print("|---|---:|---:|---:|")
    for job, values in results.items():
        print(f"| {job} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |"
              f" {statistics.median(values) / dense:.3f}x |")
    print("Target: imp at most 1.03x dense_fits.")


if __name__ == "__main__":
    main()
