"""RigL, SET and static ERK at longer training (docs/RESULTS.md 5d, issue 16): does the RigL papers' ordering at
equal steps (RigL > SET > static) appear when the trainings are 5x those of RESULTS 3b?

LeNet-300-100 on Fashion-MNIST, Adam 1.2e-3, batch 60 (RESULTS 3b's recipe), each method trained ``--steps`` optimizer
steps (default 1000, RESULTS 3b's length, and 5000); ``examples/sparse_training.py``'s methods: ``static``
(random ERK masks, fixed), ``set`` and ``rigl`` (ERK, masks updated every ``--update-every`` steps until 75% of
training, drop fraction 0.3 decaying by a cosine). Densities 10% (RESULTS 3b's) and 2%, where connectivity has more
to gain. Each (steps, density, method, seed) writes ``result.json`` and is not run again.

    python examples/longer_sparse_training.py run --densities 0.1 --out lt_logs/longer_dst    # one process per density
    python examples/longer_sparse_training.py report --out lt_logs/longer_dst
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sparse_training import run_method  # noqa: E402
from stability import interval, mean_half, save, table  # noqa: E402

from lt_lightning.experiments.configs import quiet_console as quiet  # noqa: E402

METHODS = ("static", "set", "rigl")
ANCHORS = """Published, for comparison (as we read Evci et al. 2020, RigL, Table 2): ResNet-50 on ImageNet at 90%
sparsity (10% density), uniform layer densities, equal steps: static 65.8%, SET 69.6%, RigL 72.0% top-1; RigL with
ERK 73.0%; with 5x the steps RigL 75.7% (ERK 76.4%). Sundar & Dwaraknath 2021 (a reproducibility study on CIFAR-10/100)
confirm the ordering at equal steps."""


def folder(out: str, steps: int, density: float, method: str, seed: int) -> str:
    return os.path.join(out, f"steps_{steps}", f"d{density}", method, f"seed_{seed}")


def run(args: argparse.Namespace) -> None:
    for steps in args.steps:
        for density in args.densities:
            for seed in args.seeds:
                for method in METHODS:
                    where = folder(args.out, steps, density, method, seed)
                    path = os.path.join(where, "result.json")
                    if os.path.isfile(path):
                        continue
                    settings = argparse.Namespace(steps=steps, update_every=args.update_every)
                    os.makedirs(where, exist_ok=True)
                    result = run_method(method, "fashion_mnist", density, seed, settings, where)
                    with open(path, "w") as f:
                        json.dump(result, f)
                    print(f"{steps} steps, density {density}, {method}, seed {seed}: val acc {result['acc']:.4f}",
                          flush=True)


def results(args: argparse.Namespace, steps: int, density: float, method: str) -> list[dict[str, Any]] | None:
    found = []
    for seed in args.seeds:
        path = os.path.join(folder(args.out, steps, density, method, seed), "result.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            found.append(json.load(f))
    return found


def report(args: argparse.Namespace) -> None:
    rows, points = [], {}
    for density in args.densities:
        for steps in args.steps:
            accs = {m: results(args, steps, density, m) for m in METHODS}
            if any(v is None for v in accs.values()):
                print(f"({steps} steps, density {density}: not every run is done; left out)")
                continue
            acc = {m: [r["acc"] for r in v] for m, v in accs.items()}
            rigl_set = [a - b for a, b in zip(acc["rigl"], acc["set"])]
            set_static = [a - b for a, b in zip(acc["set"], acc["static"])]
            rows.append([f"{100 * density:.3g}", steps, *(interval(acc[m]) for m in METHODS), interval(rigl_set),
                         interval(set_static)])
            points[(density, steps)] = {m: mean_half(acc[m]) for m in METHODS}
    text = table(["% weights", "steps", *[f"{m} (%)" for m in METHODS], "rigl - set (points)",
                  "set - static (points)"], rows)
    text += (f"\n\nLeNet-300-100, Fashion-MNIST, Adam 1.2e-3, batch 60; masks updated every {args.update_every} steps"
             f" until 75% of training, drop fraction 0.3 (cosine); ERK; seeds {args.seeds}; val accuracy at the end"
             " (5000 held-out training images), mean [95% interval]; differences paired by seed.")
    print(text)
    with open(os.path.join(args.out, "longer_sparse_training.md"), "w") as f:
        f.write(text + "\n")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4 * len(args.densities) + 1, 7), 4), layout="constrained")  # room for the title
    axes = fig.subplots(1, len(args.densities), squeeze=False)[0]
    for ax, density in zip(axes, args.densities):
        for offset, method in enumerate(METHODS):
            xs = [s for s in args.steps if (density, s) in points]
            ax.errorbar([x * (1 + 0.04 * (offset - 1)) for x in xs], [points[(density, s)][method][0] for s in xs],
                        yerr=[points[(density, s)][method][1] for s in xs], fmt="o-", capsize=4, label=method)
        ax.set_xscale("log")
        ax.set_xticks(args.steps, [str(s) for s in args.steps])
        ax.minorticks_off()
        ax.set_xlabel("optimizer steps a training")
        ax.set_ylabel("val accuracy (%)")
        ax.set_title(f"{100 * density:.3g}% of weights", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"LeNet-300-100, Fashion-MNIST: static vs. SET vs. RigL ({len(args.seeds)} seeds, 95% intervals)",
                 fontsize="medium")
    save(fig, os.path.join(args.out, "longer_sparse_training.png"))
    print(ANCHORS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.02])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--update-every", type=int, default=50)
    parser.add_argument("--out", default=os.path.join("lt_logs", "longer_dst"))
    args = parser.parse_args()
    quiet(1)
    os.makedirs(args.out, exist_ok=True)
    if args.command == "run":
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
