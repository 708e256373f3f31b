"""Hybrid tickets (Su et al. 2020, "Sanity-checking pruning methods: random tickets can win the jackpot"; issue 16
item 3, docs/RESULTS.md 5e) on the network and recipe of RESULTS 5a: Conv-2 on Fashion-MNIST averaged to 7x7
pixels, SGD 0.1 (momentum 0.9, cosine decay), batch 32, 600 steps a training (``late_rewinding.recipe_config``).

Four ways to a sparse network, each at the densities of 5a's IMP (4 rounds pruning 60% of the remaining weights:
40, 16, 6.4, 2.6%), compared at 16% and 2.6%:

- ``hybrid``: ``IMPCallback(reset="lr_rewind", allocation="smart_ratios")``, Su et al.'s hybrid tickets: magnitude
  pruning each round with smart-ratio layer densities, the trained weights kept and the learning rate rewound;
- ``random``: random tickets at smart ratios, ``PruneAtInitCallback(method="random", allocation="smart_ratios")``,
  one per density, trained 600 steps from the initialization;
- ``imp_rewind``: IMP with global magnitude pruning, weights rewound to the initialization (k = 0);
- ``imp_lr_rewind``: IMP with global magnitude pruning and learning-rate rewinding (Renda et al. 2020).

``--allocation smart_ratios_vgg`` runs ``hybrid`` and ``random`` with the authors' rule for VGG-style networks
instead (their code's choice for Conv-2-like networks; the paper states the ResNet rule), as settings of their own.
Seed S is the initialization (``seed_everything``) of every setting, and the random masks' seed.

    python examples/hybrid_tickets.py run --settings hybrid --seeds 0   # one chunk: one setting of one seed
    python examples/hybrid_tickets.py report --png docs/hybrid_tickets.png   # table (OUT/hybrid_tickets.md), plot
    python examples/hybrid_tickets.py run --quick --out /tmp/ht_quick   # a smoke test with tiny trainings

A setting whose result exists is not run again (``run`` goes on where it stopped).
"""

from __future__ import annotations

import argparse
import os
import warnings
from typing import Any

import yaml
from late_rewinding import IMP, err, recipe_config  # also puts examples/ on the path, for the data module
from stability import interval, mean_half, save, table

from lt_lightning.cli import main as lt_lightning
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.records import load_history, read_result

HERE = os.path.dirname(os.path.abspath(__file__))
ROUNDS = (2, 4)  # the IMP rounds compared: 16% and 2.6% of the weights
DENSITIES = tuple((1 - IMP["pruning_fraction"]) ** r for r in ROUNDS)
METHODS = {  # name: (IMP reset, or None for random masks at init; allocation, or None for --allocation's)
    "hybrid": ("lr_rewind", None),
    "random": (None, None),
    "imp_rewind": ("rewind", "global"),
    "imp_lr_rewind": ("lr_rewind", "global"),
}
LABELS = {"hybrid": "hybrid: smart ratios + LR rewinding", "random": "random ticket at smart ratios",
          "imp_rewind": "IMP, weight rewinding to init", "imp_lr_rewind": "IMP, LR rewinding"}
BASELINE = "imp_lr_rewind"
ANCHORS = """Published, for comparison (Su et al. 2020, NeurIPS; VGG-19 and ResNet-32 on CIFAR-10/100, Tiny-ImageNet):
- "Random tickets" (each layer pruned at random to a data-independent smart-ratio density, trained from
  initialization) outperform or match the "initial tickets" of pruning-at-init methods (SNIP, GraSP).
- Learning-rate rewinding passes their sanity checks; "hybrid tickets" (its layer densities replaced by the smart
  ratios) "achieve further improvement" over it."""


def setting(method: str, allocation: str) -> str:
    """The setting's name: the method, with the smart-ratio rule when it is not the default one."""
    return method if METHODS[method][1] or allocation == "smart_ratios" else f"{method}_{allocation}"


def folder(out: str, name: str, seed: int, density: float | None = None) -> str:
    where = os.path.join(out, name, f"seed_{seed}")
    return where if density is None else os.path.join(where, f"d{density:.4g}")


def config(method: str, allocation: str, seed: int, steps: int | None, where: str, density: float) -> dict[str, Any]:
    reset, chosen = METHODS[method]
    chosen = chosen or allocation
    run = recipe_config("sgd", seed, steps)
    run["trainer"]["logger"]["init_args"].update(save_dir=where, name="", version="logs")
    if reset is None:
        run["trainer"]["callbacks"] = [
            {"class_path": "lt_lightning.PruneAtInitCallback",
             "init_args": {"method": "random", "density": density, "allocation": chosen, "seed": seed}},
            {"class_path": "lt_lightning.RecordCallback", "init_args": {"path": os.path.join(where, "result.json")}}]
    else:
        imp = {k: v for k, v in IMP.items() if k not in ("same_basin", "save_trained")}
        imp.update(reset=reset, allocation=chosen, dirpath=where)
        run["trainer"]["callbacks"] = [{"class_path": "lt_lightning.IMPCallback", "init_args": imp}]
    return run


def fit(run: dict[str, Any], where: str) -> None:
    os.makedirs(where, exist_ok=True)
    path = os.path.join(where, "config.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(run, f, sort_keys=False)
    status = lt_lightning(["fit", "--config", path])
    if status != 0:
        raise SystemExit(f"lt-lightning fit --config {path} failed with status {status}")


def run(out: str, methods: list[str], allocation: str, seeds: list[int], quick: bool) -> None:
    steps = 40 if quick else None
    for method in methods:
        name = setting(method, allocation)
        for seed in seeds:
            if METHODS[method][0] is None:
                for density in DENSITIES:
                    where = folder(out, name, seed, density)
                    if not os.path.isfile(os.path.join(where, "result.json")):
                        print(f"--- {name}, seed {seed}, density {density:.4g}", flush=True)
                        fit(config(method, allocation, seed, steps, where, density), where)
                continue
            where = folder(out, name, seed)
            if errors(out, name, [seed]) is None:
                print(f"--- {name}, seed {seed}: IMP, {IMP['rounds']} rounds", flush=True)
                fit(config(method, allocation, seed, steps, where, DENSITIES[-1]), where)


# ------------------------------------------------------------------------------------------ report
def errors(out: str, name: str, seeds: list[int]) -> list[dict[float, float]] | None:
    """Per seed, val error by density (0 for dense, IMP settings only); None unless every seed has run."""
    found: list[dict[float, float]] = []
    for seed in seeds:
        if name.startswith("random"):
            paths = [os.path.join(folder(out, name, seed, d), "result.json") for d in DENSITIES]
            if not all(os.path.isfile(p) for p in paths):
                return None
            found.append({d: err(read_result(p)[0]) for d, p in zip(DENSITIES, paths)})
            continue
        path = os.path.join(folder(out, name, seed), "imp_history.json")
        if not os.path.isfile(path):
            return None
        history = load_history(os.path.dirname(path))
        if len(history) != IMP["rounds"] + 1:
            return None
        found.append({0: err(history[0]), **{d: err(history[r]) for d, r in zip(DENSITIES, ROUNDS)}})
    return found


def report(out: str, seeds: list[int], allocations: list[str], png: str) -> None:
    names = {setting(m, a): m for a in allocations for m in METHODS}  # name: method, in order
    results = {n: r for n in names if (r := errors(out, n, seeds)) is not None}
    for name in names.keys() - results.keys():
        print(f"({name}: not every seed has run; left out)")
    if BASELINE not in results:
        return
    base = results[BASELINE]
    rows = [["dense (round 0 of IMP)", interval([r[0] for r in base]), "", "", ""]]
    for name, found in results.items():
        cells = [interval([r[d] for r in found]) for d in DENSITIES]
        gaps = []
        for d in DENSITIES:
            diff = [r[d] - b[d] for r, b in zip(found, base)]
            gaps.append("" if name == BASELINE else f"{interval(diff)} ({sum(g < 0 for g in diff)}/{len(diff)})")
        rule = "" if name == names[name] else f" ({name[len(names[name]) + 1:]})"
        rows.append([LABELS[names[name]] + rule, *cells, *gaps])
    headers = ["setting", *[f"val error at {100 * d:.3g}% (%)" for d in DENSITIES],
               *[f"- {LABELS[BASELINE]} at {100 * d:.3g}% (points; seeds better)" for d in DENSITIES]]
    text = table(headers, rows)
    text += (f"\n\nConv-2, 7x7 Fashion-MNIST, SGD 0.1 (momentum 0.9, cosine decay), batch 32, 600 steps a training;"
             f" IMP settings: {IMP['rounds']} rounds pruning {100 * IMP['pruning_fraction']:.0f}% of the remaining"
             f" weights a round (magnitude); random tickets: one 600-step training at each density. {len(seeds)}"
             f" seeds (initializations {seeds}), mean [95% Student-t interval]; differences paired by seed.")
    print(f"\n### Hybrid tickets\n\n{text}\n", flush=True)
    with open(os.path.join(out, "hybrid_tickets.md"), "w") as f:
        f.write(f"### Hybrid tickets\n\n{text}\n")
    plot(png, results, len(seeds))


def plot(png: str, results: dict[str, list[dict[float, float]]], n: int) -> None:
    """Val error against density, every setting at full scale (left) and zoomed on the trained-then-pruned ones
    (right), whose differences are a point or two where random tickets can be at chance."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    dense = mean_half([r[0] for r in results[BASELINE]])[0]
    for ax, zoom in zip(fig.subplots(1, 2), (False, True)):
        markers = iter(("o-", "s--", "^-", "D-", "v--", "P--"))
        for offset, (name, found) in enumerate(results.items()):
            points = [mean_half([r[d] for r in found]) for d in DENSITIES]
            x = [100 * d * (1 + 0.03 * (offset - len(results) / 2)) for d in DENSITIES]  # apart, to show the bars
            ax.errorbar(x, [p[0] for p in points], yerr=[p[1] for p in points], fmt=next(markers), capsize=4,
                        label=name)
        ax.axhline(dense, color="grey", linestyle=":", label="dense")
        if zoom:
            ax.set_ylim(dense - 4, dense + 3)
        ax.set_xscale("log")
        ax.set_xticks([100 * d for d in DENSITIES], [f"{100 * d:.3g}" for d in DENSITIES])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("% weights remaining")
        ax.set_ylabel("val error (%)")
        ax.set_title("zoomed near dense" if zoom else "all settings", fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Conv-2, 7x7 Fashion-MNIST: hybrid and random tickets against IMP ({n} seeds, 95% intervals)",
                 fontsize="medium")
    save(fig, png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--settings", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--allocation", nargs="+", default=["smart_ratios"],
                        choices=["smart_ratios", "smart_ratios_vgg"],
                        help="smart-ratio rule(s) of hybrid and random (report: those to show)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=os.path.join("lt_logs", "hybrid_tickets"))
    parser.add_argument("--png", help="where report writes the plot (default: OUT/hybrid_tickets.png)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny trainings, numbers meaningless")
    args = parser.parse_args()
    quiet(1)
    for message in ("LightningCLI's args parameter", ".*smaller than the logging interval"):
        warnings.filterwarnings("ignore", message)
    os.makedirs(args.out, exist_ok=True)
    if args.command == "run":
        for allocation in args.allocation:
            run(args.out, args.settings, allocation, args.seeds, args.quick)
    else:
        report(args.out, args.seeds, args.allocation, args.png or os.path.join(args.out, "hybrid_tickets.png"))
    print(ANCHORS)


if __name__ == "__main__":
    main()
