"""Evidence for linear mode connectivity (docs/RESULTS.md, issue 9): instability at initialization, instability
against the rewind step, and the same-basin measurement along IMP rounds, each over several seeds.

The *instability* of a network at step k (Frankle et al. 2020) is the error barrier between two copies trained from
its state at k to the end of one training with different data orders: the highest validation error on the straight
line between the two trained copies (30 points) minus the mean of the two ends; *stable* below 2 points of error.

- ``lenet``: LeNet-300-100 on Fashion-MNIST, Adam 1.2e-3, batch 60, 3000 steps a training: the config of the IMP
  runs of docs/RESULTS.md 1b (``examples/configs/fashion_mnist_lenet_seeds.yaml``, its IMP callbacks left out), so
  seed S is the initialization whose tickets were measured there. Instability at k = 0 (`instability`).
- ``conv``: Conv-2 on Fashion-MNIST averaged down to 7x7 pixels, SGD 0.1 with momentum 0.9 and cosine decay,
  batch 32, 600 steps a training (``examples/configs/stability_conv2.yaml``): instability at k = 0, 10, 30, 100, 300
  (`rewind_search`; one training to step 300 saves every start state).
- ``basin``: IMP on the MNIST-1D MLP of ``make demo`` (``examples/configs/mnist1d_demo.yaml``, with
  ``same_basin=True`` and ``save_trained=True``): per round the L2 distance and cosine similarity of the trained
  ticket's prunable weights to the trained dense network and to the previous round (from the history), the error
  barrier on the line from the trained dense network (dense) to the trained ticket (sparse; the interior of that
  path is dense, its weights pruned by the ticket going linearly to 0), and the same to the previous round's
  trained ticket; the instability of each ticket at its rewind point (k = 0, two copies keeping its masks) and of
  the dense network at k = 0; and, for reference, a dense network retrained from the same initialization with
  another data order (one copy of the dense instability analysis) against the trained dense network.

Tables are means over seeds with 95% Student-t intervals; barriers and errors in points of validation error (%).
Each part prints its tables and writes them (``lenet.md``, ``conv.md``, ``basin.md``) and PNGs under ``--out``: per seed the tools' own
reports (``report/error_vs_alpha.png``, ``report/rewind_search.png``), and over the seeds ``lenet_error_vs_alpha.png``,
``conv_instability_vs_k.png``, ``basin_seed_S.png`` and ``basin_vs_density.png``.

    python examples/stability.py lenet conv basin --out lt_logs/stability   # about 20 minutes on 2 CPU cores
    python examples/stability.py lenet conv basin --quick                   # a smoke test with tiny trainings

A training whose output exists is not run again, so an interrupted run goes on where it stopped (give ``--quick``
runs their own ``--out``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import shutil
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch.nn.functional as F
import yaml
from torch.utils.data import TensorDataset

from lt_lightning.analysis import error_barrier, interpolate, student_t_quantile
from lt_lightning.analysis.lmc import cosine_similarity, l2_distance
from lt_lightning.cli import main as lt_lightning
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.experiments.lmc import instability, rewind_search, validation_evaluator
from lt_lightning.masks import select_parameters
from lt_lightning.records import load_history
from lt_lightning.reporting.lmc import read_lmc, write_lmc_report
from lt_lightning.reporting.lmc_plots import DPI, plot_error_vs_alpha
from lt_lightning.state import load_snapshot
from lt_lightning.ticket import load_ticket
from lt_lightning.zoo import Classifier, FashionMNISTDataModule, MNIST1DDataModule

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = os.path.join(HERE, "configs")
POINTS = 30
THRESHOLD = 0.02  # stable below 2 points of error (Frankle et al. 2020)
ANCHORS = """Published, for comparison (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis"):
- LeNet-300-100 on MNIST is stable at initialization (k = 0); so are its IMP tickets, which match dense.
- ResNet-20 and VGG-16 on CIFAR-10 are unstable at k = 0 and become stable early in training (rewind points
  needed: ResNet-20 500 iterations, VGG-16 1000); IMP tickets match dense from the rewind steps where the dense
  network is stable.
- Evci et al. 2022 (Gradient flow in sparse networks): lottery tickets retrain into the basin of the dense
  solution they were pruned from."""


class SmallFashionMNIST(FashionMNISTDataModule):
    """Fashion-MNIST (from the local IDX files) averaged down to ``image_size`` x ``image_size`` pixels, so that a
    convolutional network trains at CPU speed (28 -> 7: 4x4 average pooling); otherwise
    :class:`~lt_lightning.zoo.FashionMNISTDataModule` (same normalization, same held-out split)."""

    def __init__(self, image_size: int = 7, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if image_size < 1 or image_size > 28:
            raise ValueError(f"image_size={image_size!r} must be in [1, 28].")
        self.image_size = image_size

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        super().setup(stage)
        pooled = {}
        for name in ("train_set", "val_set", "test_set"):
            dataset = getattr(self, name)
            if id(dataset) not in pooled:  # val_size=0 serves the test set as val: pool it once
                x, y = dataset.tensors
                pooled[id(dataset)] = TensorDataset(F.adaptive_avg_pool2d(x, self.image_size), y)
            setattr(self, name, pooled[id(dataset)])


# ------------------------------------------------------------------------------------------ statistics, tables
def interval(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean [low, high]`` of ``values`` times ``scale``: the 95% Student-t interval of the mean over seeds."""
    values = [scale * v for v in values]
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    half = student_t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


def mean_half(values: Sequence[float], scale: float = 100.0) -> tuple[float, float]:
    values = [scale * v for v in values]
    if len(values) < 2:
        return statistics.mean(values), 0.0
    return statistics.mean(values), student_t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def stable_count(barriers: Sequence[float]) -> str:
    return f"{sum(b < THRESHOLD for b in barriers)} of {len(barriers)}"


def publish(out: str, part: str, title: str, text: str) -> None:
    """Print a table and append it to ``OUT/<part>.md`` (emptied when the part starts)."""
    print(f"\n### {title}\n\n{text}\n", flush=True)
    with open(os.path.join(out, f"{part}.md"), "a") as f:
        f.write(f"### {title}\n\n{text}\n\n")


def read_config(name: str, seed: int) -> dict[str, Any]:
    with open(os.path.join(CONFIGS, name)) as f:
        config = yaml.safe_load(f)
    config["seed_everything"] = seed
    return config


def copy_seeds(seed: int) -> tuple[int, int]:
    """The data-order seeds of the two copies of replicate ``seed`` (distinct from every initialization seed)."""
    return 1000 + seed, 2000 + seed


def save(figure: Any, path: str) -> str:
    figure.savefig(path, dpi=DPI)
    return path


# ------------------------------------------------------------------------------------------ LeNet at k = 0
def lenet(out: str, seeds: list[int], steps: int | None) -> None:
    results = []
    for seed in seeds:
        config = read_config("fashion_mnist_lenet_seeds.yaml", seed)
        if steps is not None:
            config["trainer"]["max_steps"] = steps
        print(f"--- lenet, seed {seed}: instability at k = 0", flush=True)
        result = instability(config, step=0, seeds=copy_seeds(seed), points=POINTS, threshold=THRESHOLD,
                             out=os.path.join(out, "lenet", f"seed_{seed}"))
        write_lmc_report(result["out"])
        results.append(result)
    save(plot_error_vs_alpha(results, [f"init seed {s}" for s in seeds]), os.path.join(out, "lenet_error_vs_alpha.png"))
    ends = [statistics.mean(e["val_err"] for e in r["endpoints"]) for r in results]  # per seed: the two copies' mean
    row = ["LeNet-300-100, Fashion-MNIST, Adam 1.2e-3", 0, results[0]["train_steps"], len(results),
           interval(ends), interval([r["barrier"] for r in results]),
           interval([r["loss_barrier"] for r in results], scale=1, digits=3),
           interval([r["l2_distance"] for r in results], scale=1), stable_count([r["barrier"] for r in results])]
    text = table(["network", "k", "steps", "n", "copies' val error (%)", "error barrier (points)", "loss barrier",
                  "L2 between copies", "stable (< 2 points)"], [row])
    text += "\n\nPer seed (init seed: error barrier in points): " + ", ".join(
        f"{s}: {100 * r['barrier']:.2f}" for s, r in zip(seeds, results)) + "."
    publish(out, "lenet", "LeNet-300-100 on Fashion-MNIST: instability at initialization", text)


# ------------------------------------------------------------------------------------------ Conv-2 against k
def conv(out: str, seeds: list[int], ks: list[int], steps: int | None) -> None:
    searches = []
    for seed in seeds:
        config = read_config("stability_conv2.yaml", seed)
        if steps is not None:
            config["trainer"]["max_steps"] = steps
        print(f"--- conv, seed {seed}: instability at k = {', '.join(map(str, ks))}", flush=True)
        search = rewind_search(config, ks, seeds=copy_seeds(seed), points=POINTS, threshold=THRESHOLD,
                               out=os.path.join(out, "conv", f"seed_{seed}"))
        write_lmc_report(search["out"])
        searches.append(search)
    rows, summary = [], []
    for i, k in enumerate(ks):
        per_seed = [s["rows"][i] for s in searches]
        details = [read_lmc(r["out"]) for r in per_seed]
        barriers = [r["barrier"] for r in per_seed]
        errors = [statistics.mean(r["copy_errors"]) for r in per_seed]  # per seed: the two copies' mean
        summary.append((k, mean_half(barriers), mean_half(errors)))
        rows.append([k, len(per_seed), interval(errors), interval(barriers),
                     interval([d["loss_barrier"] for d in details], scale=1, digits=3),
                     interval([d["l2_distance"] for d in details], scale=1), stable_count(barriers),
                     ", ".join(f"{100 * b:.1f}" for b in barriers)])
    text = table(["k (steps)", "n", "copies' val error (%)", "error barrier (points)", "loss barrier",
                  "L2 between copies", "stable (< 2 points)", "barrier per seed"], rows)
    earliest = [s["earliest_stable"] for s in searches]
    text += f"\n\nEarliest stable k per seed: {', '.join(str(e) for e in earliest)} (of k = {ks})."
    steps_done = read_lmc(searches[0]["rows"][0]["out"])["train_steps"]
    publish(out, "conv", f"Conv-2 on 7x7 Fashion-MNIST (SGD): instability against the rewind step ({steps_done} steps a"
                 " training)", text)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.errorbar([k for k, _, _ in summary], [b[0] for _, b, _ in summary], yerr=[b[1] for _, b, _ in summary],
                fmt="o-", capsize=4, color="tab:red", label=f"error barrier, mean and 95% interval ({len(seeds)} seeds)")
    ax.errorbar([k for k, _, _ in summary], [e[0] for _, _, e in summary], yerr=[e[1] for _, _, e in summary],
                fmt="s--", capsize=4, color="tab:blue", label="copies' val error")
    ax.axhline(100 * THRESHOLD, color="grey", linestyle=":", label="stable below 2 points")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlim(-2, 1.5 * max(ks))
    ax.set_xlabel("rewind step k (optimizer steps)")
    ax.set_ylabel("points of validation error (%)")
    ax.set_title("Conv-2, 7x7 Fashion-MNIST, SGD: instability vs. rewind step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save(fig, os.path.join(out, "conv_instability_vs_k.png"))


# ------------------------------------------------------------------------------------------ same basin along IMP
def basin_config(out: str, quick: bool) -> str:
    """The `make demo` config with same_basin and save_trained, written to ``out`` (``--quick``: 2 rounds of 2
    epochs)."""
    with open(os.path.join(CONFIGS, "mnist1d_demo.yaml")) as f:
        config = yaml.safe_load(f)
    config["trainer"]["logger"]["init_args"]["name"] = "mnist1d_basin"
    for spec in config["trainer"]["callbacks"]:
        if spec["class_path"] == "lt_lightning.IMPCallback":
            spec["init_args"].update(same_basin=True, save_trained=True)
            if quick:
                spec["init_args"]["rounds"] = 2
    if quick:
        config["trainer"]["max_epochs"] = 2
    path = os.path.join(out, "configs", "mnist1d_basin.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def imp_run(path: str, out: str, seed: int) -> str:
    with open(path) as f:
        config = yaml.safe_load(f)
    rounds = next(s["init_args"]["rounds"] for s in config["trainer"]["callbacks"]
                  if s["class_path"] == "lt_lightning.IMPCallback")
    run_dir = os.path.join(out, "mnist1d_basin", f"seed_{seed}")
    history = os.path.join(run_dir, "imp_history.json")
    if not (os.path.isfile(history) and len(load_history(run_dir)) == rounds + 1):
        shutil.rmtree(run_dir, ignore_errors=True)
        status = lt_lightning(["fit", "--config", path, f"--seed_everything={seed}",
                               f"--trainer.logger.init_args.save_dir={out}",
                               f"--trainer.logger.init_args.version=seed_{seed}"])
        if status != 0:
            raise SystemExit(f"lt-lightning fit --config {path} (seed {seed}) failed with status {status}")
    return run_dir


def basin(out: str, seeds: list[int], quick: bool) -> None:
    path = basin_config(out, quick)
    with open(path) as f:
        base = yaml.safe_load(f)
    module = Classifier(**base["model"]["init_args"])
    data = MNIST1DDataModule(**base["data"]["init_args"])
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    evaluate = validation_evaluator(trainer, module, data)
    names = select_parameters(module)  # the prunable weights, as the history's basin distances
    per_seed = []
    for seed in seeds:
        print(f"--- basin, seed {seed}: IMP with same_basin=True, save_trained=True", flush=True)
        run_dir = imp_run(path, out, seed)
        history = load_history(run_dir)
        config = copy.deepcopy(base)
        config["seed_everything"] = seed  # the IMP run's initialization: the dense copies start from it
        print(f"--- basin, seed {seed}: instability of the dense network and of each round's ticket", flush=True)
        analyses = os.path.join(run_dir, "instability")
        dense_instability = instability(config, step=0, seeds=copy_seeds(seed), points=POINTS, threshold=THRESHOLD,
                                        out=os.path.join(analyses, "dense"))
        write_lmc_report(dense_instability["out"])
        tickets = {}
        for record in history[1:]:
            tickets[record.round] = instability(config, start=record.ticket, seeds=copy_seeds(seed), points=POINTS,
                                                threshold=THRESHOLD,
                                                out=os.path.join(analyses, f"round_{record.round:02d}"))
            write_lmc_report(tickets[record.round]["out"])
        print(f"--- basin, seed {seed}: paths from the trained dense network to each trained ticket", flush=True)
        trained_tickets = {r.round: load_ticket(r.trained_ticket) for r in history}
        trained = {r: t.state_dict for r, t in trained_tickets.items()}
        to_dense, to_previous = {}, {}
        for record in history[1:]:
            r = record.round
            to_dense[r] = interpolate(module, trained[0], trained[r], evaluate, POINTS)
            to_previous[r] = interpolate(module, trained[r - 1], trained[r], evaluate, POINTS)
        # Reference: the dense network retrained from the same initialization with another data order.
        retrained = load_snapshot(os.path.join(dense_instability["out"], f"copy_seed{copy_seeds(seed)[0]}",
                                               "end.pt")).model
        reference_curve = interpolate(module, trained[0], retrained, evaluate, POINTS)
        per_seed.append({
            "history": history, "dense_instability": dense_instability, "tickets": tickets,
            "to_dense": {r: error_barrier(c, "val_err") for r, c in to_dense.items()},
            "to_dense_excess": {r: excess(c) for r, c in to_dense.items()},
            "to_previous": {r: error_barrier(c, "val_err") for r, c in to_previous.items()},
            "reference": {"l2": l2_distance(trained[0], retrained, names),
                          "cosine": cosine_similarity(trained[0], retrained, names),
                          "barrier": error_barrier(reference_curve, "val_err"), "excess": excess(reference_curve)},
            "dense_norm": math.sqrt(sum(float(trained[0][n].pow(2).sum()) for n in names)),
            "split": {r: split_distance(trained[0], trained[r], retrained, trained_tickets[r].masks, names)
                      for r in to_dense},
        })
        curves = [{"curve": reference_curve, "key": "val_err", "barrier": error_barrier(reference_curve, "val_err"),
                   "step": 0}]
        labels = ["dense retrained, other data order"]
        for record in history[1:]:
            curve = to_dense[record.round]
            curves.append({"curve": curve, "key": "val_err", "barrier": error_barrier(curve, "val_err"), "step": 0})
            labels.append(f"round {record.round} ({100 * record.density:.3g}% of weights)")
        figure = plot_error_vs_alpha(curves, labels)
        figure.axes[0].set_xlabel("alpha (0: trained dense network, 1: trained ticket)")
        figure.axes[0].set_title(f"MNIST-1D MLP, seed {seed}: trained dense network to each trained ticket",
                                 fontsize="medium")
        save(figure, os.path.join(out, f"basin_seed_{seed}.png"))
    basin_table(out, per_seed)


def excess(curve: list[dict[str, float]]) -> float:
    """How far the error along a path rises above its *worse* end (0 for a path that only climbs from the better end
    to the worse). The error barrier measures from the mean of the ends, so between ends of unequal error a path
    without any bump has a barrier of half their difference."""
    return max(p["val_err"] for p in curve) - max(curve[0]["val_err"], curve[-1]["val_err"])


def split_distance(dense: dict[str, Any], ticket: dict[str, Any], retrained: dict[str, Any], masks: Any,
                   names: list[str]) -> dict[str, float]:
    """Where the L2 distance from the trained dense network to a trained ticket comes from: the dense weights the
    ticket prunes (``pruned``) and the weights it keeps (``kept``; ``pruned**2 + kept**2`` is the distance squared),
    with the cosine over the kept weights; and the same kept weights of the dense network retrained with another data
    order (``reference_kept``, ``reference_cosine``)."""
    kept = {n: masks[n].to(dense[n].dtype) for n in names}
    on = {label: {n: state[n] * kept[n] for n in names} for label, state in
          (("dense", dense), ("ticket", ticket), ("retrained", retrained))}
    return {"pruned": math.sqrt(sum(float((dense[n] * (1 - kept[n])).pow(2).sum()) for n in names)),
            "kept": l2_distance(on["dense"], on["ticket"], names),
            "cosine": cosine_similarity(on["dense"], on["ticket"], names),
            "reference_kept": l2_distance(on["dense"], on["retrained"], names),
            "reference_cosine": cosine_similarity(on["dense"], on["retrained"], names)}


def basin_table(out: str, per_seed: list[dict[str, Any]]) -> None:
    def err(record: Any) -> float:
        return 1.0 - record.final["val_acc"]

    rounds = [r.round for r in per_seed[0]["history"]]
    rows = []
    dense = [s["history"][0] for s in per_seed]
    rows.append([0, 100, interval([err(r) for r in dense]), "", "", "", "", "", "", "", "",
                 interval([s["dense_instability"]["barrier"] for s in per_seed])])
    summary = []
    for r in rounds[1:]:
        records = [s["history"][r] for s in per_seed]
        gap = [err(t) - err(d) for t, d in zip(records, dense)]
        basins = [t.basin for t in records]
        barrier_dense = [s["to_dense"][r] for s in per_seed]
        ticket_instability = [s["tickets"][r]["barrier"] for s in per_seed]
        summary.append((records[0].density, mean_half([b["l2_to_dense"] for b in basins], 1),
                        mean_half([b["cosine_to_dense"] for b in basins], 1), mean_half(barrier_dense)))
        rows.append([r, f"{100 * records[0].density:.3g}", interval([err(t) for t in records]), interval(gap),
                     interval([b["l2_to_dense"] for b in basins], 1), interval([b["cosine_to_dense"] for b in basins], 1, 3),
                     interval([b["l2_to_previous"] for b in basins], 1),
                     interval([b["cosine_to_previous"] for b in basins], 1, 3), interval(barrier_dense),
                     interval([s["to_dense_excess"][r] for s in per_seed]),
                     interval([s["to_previous"][r] for s in per_seed]), interval(ticket_instability)])
    references = [s["reference"] for s in per_seed]
    rows.append(["dense, other data order", 100, "", "", interval([x["l2"] for x in references], 1),
                 interval([x["cosine"] for x in references], 1, 3), "", "", interval([x["barrier"] for x in references]),
                 interval([x["excess"] for x in references]), "", ""])
    text = table(["round", "% weights remaining", "val error (%)", "ticket - dense (points)", "L2 to dense",
                  "cosine to dense", "L2 to previous", "cosine to previous", "error barrier to dense (points)",
                  "rise above the worse end, to dense (points)", "error barrier to previous (points)",
                  "instability at k = 0 (points)"], rows)
    text += ("\n\n|trained dense| (prunable weights) = " + interval([s["dense_norm"] for s in per_seed], 1)
             + ". Last row: the dense network retrained from the same initialization with another data order (one"
               " copy of the dense instability analysis), against the trained dense network. The error barrier"
               " measures from the mean of the two ends: between a dense network and a ticket of higher error, a path"
               " that only climbs has a barrier of half their difference; 'rise above the worse end' is the bump"
               " beyond that.")
    publish(out, "basin", f"Same basin along IMP rounds: MNIST-1D MLP ({len(per_seed)} seeds)", text)
    rows = []
    for r in rounds[1:]:
        splits = [s["split"][r] for s in per_seed]
        rows.append([r, f"{100 * per_seed[0]['history'][r].density:.3g}",
                     interval([s["history"][r].basin["l2_to_dense"] for s in per_seed], 1),
                     interval([x["pruned"] for x in splits], 1), interval([x["kept"] for x in splits], 1),
                     interval([x["reference_kept"] for x in splits], 1), interval([x["cosine"] for x in splits], 1, 3),
                     interval([x["reference_cosine"] for x in splits], 1, 3)])
    text = table(["round", "% weights remaining", "L2 to dense", "of which: dense weights the ticket prunes",
                  "of which: kept weights", "kept weights: dense, other data order", "cosine on kept weights",
                  "cosine on kept weights: dense, other data order"], rows)
    text += ("\n\nL2 to dense squared = (dense weights the ticket prunes)^2 + (distance on the kept weights)^2. The"
             " reference columns compare the trained dense network with its retraining from the same initialization"
             " with another data order, on the same kept weights.")
    publish(out, "basin", "Same basin: where the distance to the dense network comes from", text)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    density = [100 * d for d, *_ in summary]
    reference = [mean_half([x[k] for x in references], 100 if k == "barrier" else 1) for k in ("l2", "cosine", "barrier")]
    for ax, index, label in zip(axes, (1, 2, 3), ("L2 to trained dense", "cosine to trained dense",
                                                   "error barrier to trained dense (points)")):
        ax.errorbar(density, [s[index][0] for s in summary], yerr=[s[index][1] for s in summary], fmt="o-", capsize=4,
                    label="trained ticket")
        ax.axhline(reference[index - 1][0], color="grey", linestyle="--", label="dense, other data order")
        ax.set_xscale("log")
        ax.set_xticks(density, [f"{d:.3g}" for d in density])
        ax.minorticks_off()
        ax.invert_xaxis()
        ax.set_xlabel("% weights remaining")
        ax.set_title(label, fontsize="medium")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"MNIST-1D MLP, IMP rewound to init: trained tickets vs. the trained dense network ({len(per_seed)}"
                 " seeds, 95% intervals)", fontsize="medium")
    save(fig, os.path.join(out, "basin_vs_density.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", choices=["lenet", "conv", "basin"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 10, 30, 100, 300], help="rewind steps of `conv`")
    parser.add_argument("--out", default=os.path.join("lt_logs", "stability"))
    parser.add_argument("--quick", action="store_true", help="a smoke test: tiny trainings, numbers meaningless")
    args = parser.parse_args()
    quiet(1)
    for message in ("LightningCLI's args parameter", ".*smaller than the logging interval",
                    ".*holds weights only"):  # the tickets' copies start at k = 0, where there is no optimizer state
        warnings.filterwarnings("ignore", message)
    sys.path.insert(0, HERE)  # the configs name stability.SmallFashionMNIST
    os.makedirs(args.out, exist_ok=True)
    started = time.perf_counter()
    ks = [k for k in args.ks if k < 40] if args.quick else args.ks
    parts = {"lenet": lambda: lenet(args.out, args.seeds, 60 if args.quick else None),
             "conv": lambda: conv(args.out, args.seeds, ks, 40 if args.quick else None),
             "basin": lambda: basin(args.out, args.seeds, args.quick)}
    for name, part in parts.items():
        if name in args.parts:
            open(os.path.join(args.out, f"{name}.md"), "w").close()
            begun = time.perf_counter()
            part()
            print(f"({name}: {time.perf_counter() - begun:.0f} s)", flush=True)
    print(ANCHORS)
    print(f"\ndone in {time.perf_counter() - started:.0f} s; tables in {args.out}/<part>.md")


if __name__ == "__main__":
    main()
