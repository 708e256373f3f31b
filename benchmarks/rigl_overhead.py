"""Per-optimizer-step cost of RigL against static sparse training at the same density, inside the same Lightning loop.

Variants, each a fresh ``Classifier`` (LeNet-300-100, Adam) trained by a fresh ``L.Trainer`` (no logger, no
checkpointing, no progress bar, no validation):

- ``dense``: no callback, for reference;
- ``static``: ``PruneAtInitCallback(method="random", allocation="erk", density=D)``: random ERK masks, fixed (static
  sparse training, the baseline RigL must not slow down between its updates);
- ``rigl``: ``RigLCallback(density=D, distribution="erk", allow_dense_layers=True, update_every=U, stop=0.95)``: the
  same initial masks, rewired every ``U`` optimizer steps.

What is timed: a warm-up epoch (not timed), then ``--epochs`` timed epochs. A timing callback, first in the callback
list, stamps ``time.perf_counter()`` and the global step at each ``on_train_batch_start``; a step's cost is the time
to the next stamp within an epoch: forward, backward, optimizer step, the masking, and every callback hook of that
batch (RigL reads the dense gradients in ``on_before_optimizer_step`` and rewires in ``on_train_batch_end`` of an
update step). RigL's steps are split into *regular* steps and *update* steps (those whose optimizer step ends at a
multiple of ``U``). A fit's value is the mean ms of each kind; each variant is fitted ``--reps`` times, interleaved
in a shuffled order per repetition, and the table gives the median over repetitions. Inputs are MNIST-shaped random
tensors (fixed seed); torch runs on one thread (these machines share cores).

    python benchmarks/rigl_overhead.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict

import lightning as L
import torch
from _timing import StepTimer, make_batches, timed_trainer
from torch.utils.data import DataLoader

from lt_lightning import PruneAtInitCallback, RigLCallback
from lt_lightning.experiments.configs import quiet_console
from lt_lightning.zoo import Classifier

VARIANTS = ("dense", "static", "rigl")


def fit_once(variant: str, batches: list, epochs: int, density: float, every: int) -> tuple[float, float | None]:
    torch.manual_seed(0)
    model = Classifier("lenet_300_100", {}, optimizer="adam", lr=1.2e-3)
    timer = StepTimer()
    callbacks: list[L.Callback] = [timer]
    rigl = None
    if variant == "static":
        callbacks.append(PruneAtInitCallback(method="random", allocation="erk", density=density))
    elif variant == "rigl":
        rigl = RigLCallback(density=density, distribution="erk", allow_dense_layers=True, update_every=every,
                            stop=0.95, save_ticket=False)
        callbacks.append(rigl)
    timed_trainer(epochs, callbacks).fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    if rigl is None:
        return timer.step_ms(), None
    if not rigl.updates or abs(rigl.masks.density() - density) > 1e-3:
        raise RuntimeError(f"rigl: {len(rigl.updates)} updates, density {rigl.masks.density():.4f}; expected updates"
                           f" at density {density}.")
    steps = timer.steps()
    return (statistics.fmean(ms for step, ms in steps if not rigl.is_update_step(step)),
            statistics.fmean(ms for step, ms in steps if rigl.is_update_step(step)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of every variant")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per fit (after one warm-up epoch)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--update-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    started = time.perf_counter()
    quiet_console(args.threads)

    batches = make_batches(args.steps, args.batch_size)
    regular: dict[str, list[float]] = defaultdict(list)
    update: list[float] = []
    order = random.Random(0)
    jobs = list(VARIANTS)
    for rep in range(args.reps):
        order.shuffle(jobs)
        for variant in jobs:
            ms, update_ms = fit_once(variant, batches, args.epochs, args.density, args.update_every)
            regular[variant].append(ms)
            if update_ms is not None:
                update.append(update_ms)
        print(f"repetition {rep + 1}/{args.reps} done ({time.perf_counter() - started:.0f} s)", flush=True)

    static = statistics.median(regular["static"])
    print(f"\nLeNet-300-100, Adam, batch {args.batch_size}, density {args.density} (random ERK), RigL update every"
          f" {args.update_every} steps; torch threads {torch.get_num_threads()}, {args.reps} interleaved repetitions.")
    print("| variant | steps | median ms/step | min-max ms/step | ratio to static (of medians) |")
    print("|---|---|---:|---:|---:|")
    for variant in VARIANTS:
        values = regular[variant]
        kind = "regular" if variant == "rigl" else "all"
        print(f"| {variant} | {kind} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} |"
              f" {statistics.median(values) / static:.3f}x |")
    print(f"| rigl | update | {statistics.median(update):.3f} | {min(update):.3f}-{max(update):.3f} |"
          f" {statistics.median(update) / static:.3f}x |")
    extra = statistics.median(update) - statistics.median(regular["rigl"])
    print(f"An update step costs {extra:.2f} ms more than a regular one ({extra / args.update_every:.3f} ms per step"
          f" averaged over the {args.update_every} steps between updates).")
    print("Target: RigL's regular steps at most 1.05x a static masked step.")
    print(f"Total wall time: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
