"""Late rewinding, stable recipes and the learning rate's effect on lottery tickets (docs/RESULTS.md 5, issue 16),
on Conv-2 on Fashion-MNIST averaged down to 7x7 pixels (the network of RESULTS 2b, unstable at k = 0 and stable from
k = 30-100 steps with SGD 0.1): 600-step trainings, batch 32, cosine decay, 5000 held-out validation images.

Every recipe is ``examples/configs/stability_conv2.yaml`` plus IMP (global magnitude pruning of 60% of the remaining
weights a round, 4 rounds: 40, 16, 6.4 and 2.6% of the weights, ``same_basin=True`` and ``save_trained=True``):

- ``sgd``: SGD lr 0.1, momentum 0.9 (RESULTS 2b's recipe): ``rewind_search`` over k = 0, 10, 30, 100, 300 with IMP
  run once per k (``lt-lightning rewind-search --imp``): does matching begin where stability begins (item 1)?
- ``warmup``: the same with a linear learning-rate warm-up over the first half of training (300 steps), as
  Frankle et al. 2020 warm VGG-16 and ResNet-20 up over 30K of their 63K steps: instability and IMP at k = 0 and
  100 (item 2).
- ``low``: the same at lr 0.01, the other stable recipe of Frankle et al. 2020 (their "low" variants): k = 0.
- ``reinit``: the randomly reinitialized control (``lt-lightning branch RUN_DIR --control reinit``) of the k = 0
  tickets of ``sgd`` (lr 0.1) and ``low`` (lr 0.01): Ma et al. 2021's question, does a ticket's advantage over
  reinitialization vanish at the larger rate (item 4)?

Then, per recipe, the trained tickets against the trained dense network (item 2): L2 distance and cosine from the
IMP history (``same_basin``), and the error barrier on the straight path from the trained dense network to each
trained ticket (30 points), beside the dense network's own instability at that k.

    python examples/late_rewinding.py run --seeds 0 --recipes sgd     # one chunk: one seed of one recipe
    python examples/late_rewinding.py report                          # tables (OUT/*.md) and plots from what ran
    python examples/late_rewinding.py report --basin sgd:0 --basin-rounds 1 4  # barriers of two tickets only
    python examples/late_rewinding.py run --quick --out /tmp/lr_quick # a smoke test with tiny trainings

A training whose output exists is not run again (``run`` goes on where it stopped); nor is a path of the barriers
(each curve is written beside its IMP run, under ``basin/``, so a ``report`` cut short goes on where it stopped).
``--workers 2`` runs two trainings at a time (one torch thread each) through the ``processes`` launcher.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # the configs name stability.SmallFashionMNIST; the helpers below come from there too
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)

import lightning as L  # noqa: E402
from stability import (  # noqa: E402
    POINTS,
    THRESHOLD,
    SmallFashionMNIST,
    copy_seeds,
    excess,
    interval,
    mean_half,
    publish,
    save,
    table,
)

from lt_lightning.analysis import error_barrier, interpolate  # noqa: E402
from lt_lightning.analysis.lmc import cosine_similarity, l2_distance  # noqa: E402
from lt_lightning.cli import main as lt_lightning  # noqa: E402
from lt_lightning.experiments.configs import quiet_console as quiet  # noqa: E402
from lt_lightning.experiments.lmc import instability, rewind_search, validation_evaluator  # noqa: E402
from lt_lightning.files import atomic_write_text  # noqa: E402
from lt_lightning.records import load_history, read_result  # noqa: E402
from lt_lightning.state import load_snapshot  # noqa: E402
from lt_lightning.ticket import load_ticket  # noqa: E402
from lt_lightning.zoo import Classifier  # noqa: E402

CONFIG = os.path.join(HERE, "configs", "stability_conv2.yaml")
KS = {"sgd": [0, 10, 30, 100, 300], "warmup": [0, 100], "low": [0], "resnet": [0, 10, 30, 100, 300]}
LABELS = {"sgd": "SGD 0.1", "warmup": "SGD 0.1, warm-up 300 steps", "low": "SGD 0.01",
          "resnet": "ResNet-20 (width 8), 14x14, SGD 0.1"}
TICKET_ROUNDS = (2, 4)  # the tickets whose own instability is measured (16% and 2.6% of the weights)
MATCH = 0.002  # a ticket matches at most 0.2 points above dense (rewind_search's default eps)
SCALES = ((1, 2), (1, 3), (100, 2), (100, 2))  # interval() scale and digits: L2, cosine, barrier, rise
IMP = {"rounds": 4, "pruning_fraction": 0.6, "allocation": "global", "same_basin": True, "save_trained": True}
BASIN_RUNS = ("sgd:0", "sgd:100", "warmup:0", "low:0")  # the IMP runs (recipe:k) whose tickets the report compares
ANCHORS = """Published, for comparison:
- Frankle et al. 2020 (Linear Mode Connectivity and the Lottery Ticket Hypothesis), Fig. 5/Table 1: IMP tickets of
  ResNet-20 and VGG-16 (CIFAR-10) rewound to k = 0 do not match dense at 16.8% / 1.5% of the weights; rewound to
  k = 500 (ResNet-20) or 1000 (VGG-16) iterations they do, the k where the dense network becomes stable. With a
  warm-up (30K iterations) or a low learning rate the dense network is stable at k = 0 and k = 0 tickets match
  (the low rate at a lower accuracy).
- Evci et al. 2022 (Gradient flow in sparse networks): tickets retrain into the basin of the dense solution.
- Ma et al. 2021 (Sanity checks for lottery tickets: does your winning ticket really win the jackpot?): with a
  small learning rate IMP tickets beat random reinitialization; at the larger, standard rate (ResNet-20/VGG-16,
  lr 0.1) the ticket's advantage over reinitialization disappears."""


def recipe_config(recipe: str, seed: int, steps: int | None) -> dict[str, Any]:
    with open(CONFIG) as f:
        config = yaml.safe_load(f)
    config["seed_everything"] = seed
    model = config["model"]["init_args"]
    if recipe == "warmup":
        model["warmup_steps"] = config["trainer"]["max_steps"] // 2
    elif recipe == "low":
        model["lr"] = 0.01
    elif recipe == "resnet":  # a deeper network with BatchNorm, as the networks that need late rewinding in the paper
        config["model"]["init_args"].update(model="resnet20", model_kwargs={"in_channels": 1, "width": 8})
        config["data"]["init_args"]["image_size"] = 14
    if steps is not None:
        config["trainer"]["max_steps"] = steps
        model["warmup_steps"] = min(model.get("warmup_steps", 0), steps // 2)
    config["trainer"]["callbacks"] = [{"class_path": "lt_lightning.IMPCallback", "init_args": dict(IMP)}]
    return config


def search_dir(out: str, recipe: str, seed: int) -> str:
    return os.path.join(out, recipe, f"seed_{seed}")


def imp_dir(out: str, recipe: str, seed: int, k: int) -> str:
    return os.path.join(search_dir(out, recipe, seed), "imp", f"step_{k}it")


def launcher(workers: int) -> Any:
    if workers == 1:
        return None
    from lt_lightning.experiments.launchers import make_launcher

    return make_launcher("processes", {"workers": workers})


def run(out: str, recipes: list[str], seeds: list[int], quick: bool, workers: int, ks: list[int] | None = None
        ) -> None:
    steps = 40 if quick else None
    for recipe in recipes:
        for seed in seeds:
            if recipe == "reinit":
                reinit(out, seed)
                continue
            if recipe == "ticket_lmc":
                ticket_instability(out, seed, steps, workers)
                continue
            steps_k = ks or ([k for k in KS[recipe] if k < 20] if quick else KS[recipe])
            print(f"--- {recipe}, seed {seed}: rewind search over k = {steps_k} with IMP", flush=True)
            begun = time.perf_counter()
            rewind_search(recipe_config(recipe, seed, steps), steps_k, seeds=copy_seeds(seed), points=POINTS,
                          threshold=THRESHOLD, run_imp=True, out=search_dir(out, recipe, seed),
                          launcher=launcher(workers))
            print(f"({recipe}, seed {seed}: {time.perf_counter() - begun:.0f} s)", flush=True)


def ticket_instability(out: str, seed: int, steps: int | None, workers: int) -> list[dict[str, Any]]:
    """The instability of the SGD 0.1 tickets rewound to k = 0 (two copies keeping the ticket's masks, trained from
    its weights at k = 0): Frankle et al.'s claim is that IMP subnetworks match only when they are stable."""
    history = load_history(imp_dir(out, "sgd", seed, 0))
    results = []
    for r in TICKET_ROUNDS:
        print(f"--- ticket_lmc, seed {seed}: instability of round {r}'s ticket (k = 0)", flush=True)
        results.append(instability(recipe_config("sgd", seed, steps), start=history[r].ticket,
                                   seeds=copy_seeds(seed), points=POINTS, threshold=THRESHOLD,
                                   out=os.path.join(search_dir(out, "sgd", seed), "ticket_lmc", f"round_{r:02d}"),
                                   launcher=launcher(workers)))
    return results


def reinit(out: str, seed: int) -> None:
    for recipe in ("sgd", "low"):
        run_dir = imp_dir(out, recipe, seed, 0)
        # `branch` reads the run's config.yaml beside its history; rewind_search's IMP runs keep it under logs/, with
        # the resumable job's ModelCheckpoint, which branch adds again (two are refused): write it without.
        target = os.path.join(run_dir, "config.yaml")
        with open(os.path.join(run_dir, "logs", "config.yaml")) as f:
            config = yaml.safe_load(f)
        config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                          if not c["class_path"].endswith("ModelCheckpoint")]
        if os.path.islink(target):
            os.remove(target)
        with open(target, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
        print(f"--- reinit, seed {seed}: the {recipe} tickets at k = 0 reinitialized", flush=True)
        status = lt_lightning(["branch", run_dir, "--control", "reinit", "--seeds", str(seed + 100)])
        if status != 0:
            raise SystemExit(f"lt-lightning branch {run_dir} failed with status {status}")


# ------------------------------------------------------------------------------------------ report
def err(record: Any) -> float:
    return 1.0 - record.final["val_acc"]


def histories(out: str, recipe: str, seeds: list[int], k: int) -> list[list[Any]] | None:
    """The IMP histories of ``recipe`` rewound to ``k``, one per seed; None unless every seed's run is complete."""
    found = []
    for seed in seeds:
        path = os.path.join(imp_dir(out, recipe, seed, k), "imp_history.json")
        if not os.path.isfile(path):
            return None
        history = load_history(os.path.dirname(path))
        if len(history) != IMP["rounds"] + 1:
            return None
        found.append(history)
    return found


def searches(out: str, recipe: str, seeds: list[int]) -> list[dict[str, Any]] | None:
    found = []
    for seed in seeds:
        path = os.path.join(search_dir(out, recipe, seed), "rewind_search.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            found.append(json.load(f))
    return found


def gap_cells(runs: list[list[Any]]) -> tuple[list[str], list[tuple[float, float]]]:
    """Per pruned round: ticket minus dense val error over seeds (cells and (mean, half-width) in points)."""
    cells, summary = [], []
    for r in range(1, IMP["rounds"] + 1):
        gaps = [err(h[r]) - err(h[0]) for h in runs]
        matching = sum(g <= MATCH for g in gaps)
        cells.append(f"{interval(gaps)} ({matching}/{len(gaps)})")
        summary.append(mean_half(gaps))
    return cells, summary


def densities(runs: list[list[Any]]) -> list[str]:
    return [f"{100 * runs[0][r].density:.3g}%" for r in range(1, IMP["rounds"] + 1)]


def report(out: str, seeds: list[int], basin_runs: list[tuple[str, int]], basin_rounds: list[int]) -> None:
    open(os.path.join(out, "late_rewinding.md"), "w").close()
    rows, curves = [], {}
    header = None
    for recipe in KS:
        found = searches(out, recipe, seeds)
        if found is None:
            print(f"({recipe}: not every seed has run; left out)")
            continue
        for i, k in enumerate(row["step"] for row in found[0]["rows"]):
            runs = histories(out, recipe, seeds, k)
            barriers = [s["rows"][i]["barrier"] for s in found]
            stable = f"{sum(b < THRESHOLD for b in barriers)}/{len(barriers)}"
            cells, summary = gap_cells(runs)
            header = header or densities(runs)
            curves.setdefault(recipe, []).append((k, mean_half(barriers), summary))
            rows.append([LABELS[recipe], k, interval([err(h[0]) for h in runs]), interval(barriers), stable, *cells])
    if not rows:
        return
    text = table(["recipe", "k (steps)", "dense val error (%)", "dense instability at k (points)", "stable",
                  *[f"ticket - dense at {d} (points; seeds matching)" for d in header]], rows)
    text += (f"\n\nConv-2, 7x7 Fashion-MNIST, batch 32, 600 steps a training, cosine decay; IMP: {IMP['rounds']}"
             f" rounds of global magnitude pruning ({100 * IMP['pruning_fraction']:.0f}% of the remaining weights a"
             f" round), rewound to k. {len(seeds)} seeds (initializations {seeds}), mean [95% interval]. A ticket"
             f" *matches* when its val error is at most its run's dense error + {100 * MATCH:.1f} points; instability:"
             f" error barrier between two copies trained from the dense network's state at k (data orders"
             f" 1000+S, 2000+S), stable below {100 * THRESHOLD:.0f} points.")
    text += ticket_instability_text(out, seeds)
    publish(out, "late_rewinding", "Late rewinding and stable recipes: instability and IMP tickets against k", text)
    plot_rescue(out, curves, header, len(seeds))
    reinit_report(out, seeds)  # before the barriers: it only reads results, the barriers evaluate 30 points a path
    basin(out, seeds, basin_runs, basin_rounds)


def ticket_instability_text(out: str, seeds: list[int]) -> str:
    lines = []
    for r in TICKET_ROUNDS:
        paths = [os.path.join(search_dir(out, "sgd", s), "ticket_lmc", f"round_{r:02d}", "instability.json")
                 for s in seeds]
        if not all(os.path.isfile(p) for p in paths):
            continue
        barriers = []
        for path in paths:
            with open(path) as f:
                barriers.append(json.load(f)["barrier"])
        density = histories(out, "sgd", seeds, 0)[0][r].density
        lines.append(f"{100 * density:.3g}% ticket: {interval(barriers)} points"
                     f" ({sum(b < THRESHOLD for b in barriers)}/{len(barriers)} stable)")
    if not lines:
        return ""
    return ("\n\nInstability of the SGD 0.1 tickets rewound to k = 0 themselves (two copies keeping the masks): "
            + "; ".join(lines) + ".")


def plot_rescue(out: str, curves: dict[str, list[Any]], header: list[str], n: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    styles = {"sgd": ("tab:red", "o-"), "warmup": ("tab:green", "s"), "low": ("tab:blue", "^")}
    for recipe, points in curves.items():
        color, fmt = styles[recipe]
        ks = [p[0] for p in points]
        left.errorbar(ks, [p[1][0] for p in points], yerr=[p[1][1] for p in points], fmt=fmt, color=color,
                      capsize=4, label=LABELS[recipe])
        for d, (label, marker) in enumerate(zip(header, ("o", "s", "^", "D"))):
            if recipe == "sgd":
                right.errorbar(ks, [p[2][d][0] for p in points], yerr=[p[2][d][1] for p in points], fmt=marker + "-",
                               capsize=3, label=f"SGD 0.1, {label} of weights")
            elif d == len(header) - 2:  # one density for the stable recipes, to keep the panel legible
                right.errorbar([k + 3 * (recipe == "low") for k in ks], [p[2][d][0] for p in points],
                               yerr=[p[2][d][1] for p in points], fmt=styles[recipe][1][0], color=color, capsize=3,
                               markersize=9, mfc="none", label=f"{LABELS[recipe]}, {label} of weights")
    left.axhline(100 * THRESHOLD, color="grey", linestyle=":", label="stable below 2 points")
    right.axhline(0, color="grey", linestyle=":")
    for ax, title in ((left, "dense network: instability at k (points)"),
                      (right, "IMP ticket rewound to k: val error - dense (points)")):
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xticks(KS["sgd"], [str(k) for k in KS["sgd"]])
        ax.minorticks_off()
        ax.set_xlim(-2, 450)
        ax.set_xlabel("rewind step k (optimizer steps of 600)")
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Conv-2, 7x7 Fashion-MNIST: late rewinding and stable recipes ({n} seeds, 95% intervals)",
                 fontsize="medium")
    save(fig, os.path.join(out, "late_rewinding.png"))


def measured_curve(path: str, state_a: Any, state_b: Any, evaluator: Callable[[], Any]) -> list[Any]:
    """The curve along the path from ``state_a`` to ``state_b``, read from ``path`` when a report has measured it;
    otherwise measured (``POINTS`` points, each a validation) and written there."""
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    module, evaluate = evaluator()
    curve = interpolate(module, state_a, state_b, evaluate, POINTS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(curve))
    return curve


def basin(out: str, seeds: list[int], basin_runs: list[tuple[str, int]], rounds: list[int]) -> None:
    """Trained tickets of ``rounds`` against the trained dense network, per IMP run (recipe, k) of ``basin_runs``."""
    runs = [(recipe, k) for recipe, k in basin_runs
            if histories(out, recipe, seeds, k) is not None and searches(out, recipe, seeds) is not None]
    if not runs or not rounds:
        return

    @cache  # built on the first path no report has measured yet
    def evaluator() -> tuple[Any, Any]:
        config = recipe_config("sgd", seeds[0], None)
        module = Classifier(**config["model"]["init_args"])
        data = SmallFashionMNIST(**config["data"]["init_args"])
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        return module, validation_evaluator(trainer, module, data)

    rows, curves, density = [], {}, {}
    for recipe, k in runs:
        per_round: dict[int, list[tuple[float, float, float, float]]] = {}
        reference = []
        for seed, history in zip(seeds, histories(out, recipe, seeds, k)):
            cache_dir = os.path.join(imp_dir(out, recipe, seed, k), "basin")
            dense = load_ticket(history[0].trained_ticket).state_dict
            for r in rounds:
                record = history[r]
                print(f"--- basin: {recipe} k = {k}, seed {seed}, round {r}", flush=True)
                curve = measured_curve(os.path.join(cache_dir, f"round_{r:02d}.json"), dense,
                                       load_ticket(record.trained_ticket).state_dict, evaluator)
                curves.setdefault((recipe, k, r), []).append(curve)
                per_round.setdefault(r, []).append(
                    (record.basin["l2_to_dense"], record.basin["cosine_to_dense"], error_barrier(curve, "val_err"),
                     excess(curve)))
            # Reference: the dense network trained from the same state at k with another data order.
            copy_end = os.path.join(search_dir(out, recipe, seed), f"step_{k}it", f"copy_seed{copy_seeds(seed)[0]}",
                                    "end.pt")
            other = load_snapshot(copy_end).model
            curve = measured_curve(os.path.join(cache_dir, "dense_other_order.json"), dense, other, evaluator)
            curves.setdefault((recipe, k, 0), []).append(curve)
            names = list(history[0].layer_density)
            reference.append((l2_distance(dense, other, names), cosine_similarity(dense, other, names),
                              error_barrier(curve, "val_err"), excess(curve)))
        history = histories(out, recipe, seeds, k)[0]
        for r, values in per_round.items():
            density[(recipe, k, r)] = history[r].density
            rows.append([LABELS[recipe], k, f"{100 * history[r].density:.3g}%",
                         *(interval([v[i] for v in values], *scale) for i, scale in enumerate(SCALES))])
        rows.append([LABELS[recipe], k, "dense, other data order",
                     *(interval([v[i] for v in reference], *scale) for i, scale in enumerate(SCALES))])
    text = table(["recipe", "k", "trained ticket", "L2 to trained dense", "cosine to trained dense",
                  "error barrier to trained dense (points)", "rise above the worse end (points)"], rows)
    text += (f"\n\nDistances over the prunable weights (`same_basin=True`); the path runs from the trained dense"
             f" network to the trained ticket (its pruned weights going linearly to 0), {POINTS} points. Last row of"
             " each recipe: the dense network trained from the same state at k with another data order (the first"
             " copy of the instability analysis at k), against the trained dense network. Barrier: the highest error"
             " on the path minus the mean of its ends; rise: minus the worse end.")
    publish(out, "late_rewinding", "Where the tickets end up: trained tickets against the trained dense network", text)
    plot_basin(out, runs, rounds, curves, density, len(seeds))


def plot_basin(out: str, runs: list[tuple[str, int]], rounds: list[int], curves: dict[tuple[str, int, int], Any],
               density: dict[tuple[str, int, int], float], n: int) -> None:
    """Val error along the paths from the trained dense network, one panel per IMP run: mean over seeds with 95%
    intervals, per ticket and for the dense network trained with another data order."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6 * len(runs) + 0.6, 4.2), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    for ax, (recipe, k) in zip(axes, runs):
        for r in [0, *rounds]:
            per_seed = curves[(recipe, k, r)]
            alphas = [p["alpha"] for p in per_seed[0]]
            stats = [mean_half([c[i]["val_err"] for c in per_seed]) for i in range(len(alphas))]
            label = "dense, other data order" if r == 0 else f"ticket at {100 * density[(recipe, k, r)]:.3g}% of weights"
            line, = ax.plot(alphas, [m for m, _ in stats], "k--" if r == 0 else "o-", markersize=3, label=label)
            ax.fill_between(alphas, [m - h for m, h in stats], [m + h for m, h in stats], color=line.get_color(),
                            alpha=0.2)
        ax.set_title(f"{LABELS[recipe]}, IMP rewound to k = {k}", fontsize="medium")
        ax.set_xlabel("alpha (0: trained dense network, 1: the other end)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("val error (%)")
    fig.suptitle(f"Conv-2, 7x7 Fashion-MNIST, 600 steps: linear paths from the trained dense network ({n} seeds,"
                 " 95% intervals)", fontsize="medium")
    save(fig, os.path.join(out, "late_rewinding_basin.png"))


def reinit_report(out: str, seeds: list[int]) -> None:
    rows, series = [], {}
    for recipe in ("sgd", "low"):
        runs = histories(out, recipe, seeds, 0)
        if runs is None:
            continue
        reinit = {}
        for seed in seeds:
            for r in range(1, IMP["rounds"] + 1):
                path = os.path.join(imp_dir(out, recipe, seed, 0), "branches", "reinit", f"round_{r:02d}",
                                    f"seed_{seed + 100}", "result.json")
                if not os.path.isfile(path):
                    break
                reinit.setdefault(r, []).append(err(read_result(path)[0]))
        if any(len(v) != len(seeds) for v in reinit.values()) or len(reinit) != IMP["rounds"]:
            print(f"(reinit of {recipe}: not every branch has run; left out)")
            continue
        for r in range(1, IMP["rounds"] + 1):
            ticket = [err(h[r]) for h in runs]
            advantage = [b - t for b, t in zip(reinit[r], ticket)]
            beats = sum(a > 0 for a in advantage)
            series.setdefault(recipe, []).append((100 * runs[0][r].density, mean_half(ticket), mean_half(reinit[r])))
            rows.append([LABELS[recipe], f"{100 * runs[0][r].density:.3g}%", interval([err(h[0]) for h in runs]),
                         interval(ticket), interval(reinit[r]), f"{interval(advantage)} ({beats}/{len(seeds)})"])
    if not rows:
        return
    text = table(["recipe", "% weights", "dense val error (%)", "ticket (%)", "reinit (%)",
                  "reinit - ticket (points; seeds where the ticket wins)"], rows)
    text += ("\n\nIMP rewound to k = 0; reinit: the ticket's masks on a fresh initialization (`lt-lightning branch"
             " RUN_DIR --control reinit`, seed S + 100), trained as the ticket.")
    publish(out, "late_rewinding", "Learning rate and the jackpot: tickets against random reinitialization", text)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for recipe, color in (("sgd", "tab:red"), ("low", "tab:blue")):
        points = series.get(recipe, [])
        x = [p[0] for p in points]
        ax.errorbar(x, [p[1][0] for p in points], yerr=[p[1][1] for p in points], fmt="o-", color=color, capsize=4,
                    label=f"{LABELS[recipe]}: IMP ticket (k = 0)")
        ax.errorbar(x, [p[2][0] for p in points], yerr=[p[2][1] for p in points], fmt="s--", color=color, capsize=4,
                    mfc="none", label=f"{LABELS[recipe]}: reinitialized")
    ax.set_xscale("log")
    ticks = [p[0] for p in next(iter(series.values()))]
    ax.set_xticks(ticks, [f"{d:.3g}" for d in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_ylim(0, 100)  # three seeds' t-intervals of a control at chance on some seeds reach past 100%
    ax.set_xlabel("% weights remaining")
    ax.set_ylabel("val error (%)")
    ax.axhline(90, color="grey", linestyle=":", label="chance (10 classes)")
    ax.set_title(f"Conv-2, 7x7 Fashion-MNIST, SGD (momentum 0.9), 600 steps: IMP ticket (k = 0) vs. reinit\n"
                 f"at two learning rates ({len(seeds)} seeds, 95% intervals)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left")
    save(fig, os.path.join(out, "lr_jackpot.png"))


def basin_run(text: str) -> tuple[str, int]:
    """``RECIPE:K`` (``sgd:0``) as ``("sgd", 0)``, for ``--basin``."""
    recipe, _, k = text.partition(":")
    if recipe not in KS or not k.isdigit() or int(k) not in KS[recipe]:
        allowed = ", ".join(f"{r}:{k}" for r, ks in KS.items() for k in ks)
        raise argparse.ArgumentTypeError(f"{text!r} is not an IMP run of this script; allowed: {allowed}")
    return recipe, int(k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--recipes", nargs="+", default=["sgd", "warmup", "low", "reinit", "ticket_lmc"],
                        choices=["sgd", "warmup", "low", "reinit", "ticket_lmc", "resnet"])
    parser.add_argument("--ks", type=int, nargs="+", help="rewind steps (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=1, help="trainings at a time (processes launcher)")
    parser.add_argument("--out", default=os.path.join("lt_logs", "late_rewinding"))
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny trainings, numbers meaningless")
    parser.add_argument("--basin", nargs="*", type=basin_run, default=[basin_run(r) for r in BASIN_RUNS],
                        metavar="RECIPE:K", help="report: the IMP runs whose trained tickets are compared with the"
                        f" trained dense network, barriers included (default: {' '.join(BASIN_RUNS)}; none: skip)")
    parser.add_argument("--basin-rounds", nargs="+", type=int, default=list(range(1, IMP["rounds"] + 1)),
                        choices=range(1, IMP["rounds"] + 1), metavar="ROUND",
                        help="report: the IMP rounds whose tickets --basin compares (default: every round)")
    args = parser.parse_args()
    quiet(1)
    for message in ("LightningCLI's args parameter", ".*smaller than the logging interval", ".*holds weights only"):
        warnings.filterwarnings("ignore", message)
    os.makedirs(args.out, exist_ok=True)
    if args.command == "run":
        run(args.out, args.recipes, args.seeds, args.quick, args.workers, args.ks)
    else:
        report(args.out, args.seeds, args.basin, args.basin_rounds)
    print(ANCHORS)


if __name__ == "__main__":
    main()
