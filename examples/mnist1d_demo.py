"""`make demo`: is it a winning ticket? IMP on MNIST-1D over several seeds, each pruned round's ticket trained
against its controls, with 95% confidence intervals and a verdict per density.

One command, ``lt-lightning experiment`` of ``examples/configs/mnist1d_demo.yaml`` (IMP: a dense round and 5 rounds
of global magnitude pruning, 50% of the remaining weights each, rewinding to the initialization): the IMP run of
every seed, then every chosen round's ticket trained as the controls ``reinit`` (the ticket's masks on a new
initialization, Frankle & Carbin 2019) and ``shuffle_masks`` (each layer's mask randomly rearranged on the same
initial weights, Su et al. 2020), each for as long as one training, then the report over the seeds: mean and 95%
interval per density, *matching* (within 0.2 points of dense, judged with the interval), *winning* (matching and
better than every control by a paired t-test over seeds), and the lowest matching density. With more than one CPU
core the trainings run on the ``processes`` launcher, one per core. The same command works on any IMP config.

    python examples/mnist1d_demo.py                     # about 2.5 minutes on 2 CPU cores
    python examples/mnist1d_demo.py --seeds 0 --rounds 4 5   # a quick look

Writes under ``--out`` (default ``lt_logs/demo``): ``seed_S/`` per seed (history, tickets, branches) and ``report/``
(report.md and the PNGs, ticket_vs_controls.png among them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time

from lt_lightning.cli import main as lt_lightning
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.experiments.launchers.processes import cpu_cores

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "mnist1d_demo.yaml")
ANCHORS = """Published, for comparison (ANCHORS.md):
- Frankle & Carbin 2019 (LeNet-300-100, MNIST): tickets match or beat dense down to ~3.6% of the weights;
  randomly re-initialised tickets fall below dense from ~21%.
- MNIST-1D lottery notebook (MLP 40-500-500-10, Adam 2e-2, 1501 steps/round): dense 61-66%; tickets at 90-92%
  sparsity 74-76% vs. random masks 60-66%; at 99% sparsity 42% vs. 15-17%."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, nargs="+", default=[2, 3, 4, 5], help="rounds whose tickets get controls")
    parser.add_argument("--controls", nargs="+", default=["reinit", "shuffle_masks"])
    parser.add_argument("--out", default=os.path.join("lt_logs", "demo"))
    parser.add_argument("--workers", type=int, default=cpu_cores(), help="trainings at a time (default: one per core;"
                        " 1: one after another in this process)")
    args = parser.parse_args()
    quiet(1)  # one torch thread per training: fastest for this small MLP
    started = time.perf_counter()
    shutil.rmtree(args.out, ignore_errors=True)  # the demo's own folder: every run starts afresh
    launcher = ["--launcher", "processes", "--workers", str(args.workers)] if args.workers > 1 else []
    status = lt_lightning(["experiment", "--config", CONFIG, "--seeds", *map(str, args.seeds), "--controls",
                           *args.controls, "--rounds", *map(str, args.rounds), "--out", args.out, "--metric", "val_acc",
                           *launcher])
    if status != 0:
        raise SystemExit(f"lt-lightning experiment failed with status {status}")
    print(ANCHORS)
    print(f"\nDemo done in {time.perf_counter() - started:.0f} s ({args.workers} at a time); report in"
          f" {os.path.join(args.out, 'report')}/.")


if __name__ == "__main__":
    main()
