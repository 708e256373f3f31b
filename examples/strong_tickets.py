"""Evidence for strong tickets (docs/RESULTS.md): subnetworks of untrained networks of growing width against the same
network weight-trained, and IMP in the DCT basis against IMP on plain weights.

- ``mlp``: MLP 40-w-w-10 on MNIST-1D (4000 train / 1000 test sequences; accuracy on the test split, as the demo).
  Per width and seed: ``dense`` (the weights trained) and three subnetworks whose weights never train, each keeping
  half of every layer's weights (``SupermaskCallback(density=0.5)``): ``edge_popup`` (signed Kaiming constant weights,
  Ramanujan et al. 2020), ``mpt_1_32`` (biprop: kept weights ``alpha * sign(w)`` from scaled Kaiming normal,
  Diffenderfer & Kailkhura 2021) and ``mpt_1_1`` (the same with sign activations). Optimizers (:data:`WEIGHTS`,
  :data:`SCORES`, :data:`BINARY`): the papers' SGD with momentum 0.9, weight decay 1e-4 and cosine decay, lr 0.1 for
  weights and 1.0 for scores (the papers train ~50x longer at 0.1), Adam 3e-3 for MPT-1/1's scores (biprop uses Adam
  there), each chosen in a one-seed pilot at width 256. The subnetworks' biases stay at their initial zeros (the
  papers' layers have none), so nothing but the scores trains. Every training runs as many epochs.
- ``conv``: the same comparison on Conv-2 scaled by width on scikit-learn's 8x8 digits (1348 train / 449 val):
  conv w, conv w, 2x2 max-pool, FC 4w, FC 4w, 10 (w = 64 is Frankle & Carbin's Conv-2), Glorot normal init.
- ``fashion`` (not run by default): the four on LeNet-300-100 on Fashion-MNIST (batch 128, accuracy on the 10,000
  test images; read from ``/usr/share/datasets/fashion-mnist``), beside Zhou et al.'s 86% on MNIST.
- ``basis``: IMP on the demo's MLP 40-256-256-10 (:data:`WEIGHTS`, 800 steps a training, rewinding to the
  initialization, global magnitude pruning of 50% of what remains a round) with the prunable weights held as DCT
  coefficients (``BasisCallback("dct")``) against the identity basis (``BasisCallback("identity")``: plain
  weights), paired by seed: the generalized lottery ticket hypothesis of Alabdulmohsin et al. 2021. With SGD (a
  linear update) an orthonormal basis changes nothing until the first pruning: only what is pruned differs.

Each supermask run is an ordinary fit with a CSVLogger; ``lt-lightning report`` draws each width's runs
(``<part>/report_w<w>/``). The script prints one table per part and writes it, with a PNG of accuracy against width
(or density), under ``--out``.

    OMP_NUM_THREADS=1 python examples/strong_tickets.py                      # about 13 minutes on one thread
    OMP_NUM_THREADS=1 python examples/strong_tickets.py mlp --widths 32 --epochs 1 --seeds 0   # a smoke test
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lt_lightning import BasisCallback, IMPCallback, RewindCallback, SupermaskCallback
from lt_lightning.analysis import compare
from lt_lightning.analysis.verdicts import student_t_quantile
from lt_lightning.callbacks.basis import COEFFICIENTS
from lt_lightning.cli import main as lt_lightning
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.zoo import Classifier, DigitsDataModule, FashionMNISTDataModule, MNIST1DDataModule

METHODS = ("dense", "edge_popup", "mpt_1_32", "mpt_1_1")
LABELS = {"dense": "dense (weights trained)", "edge_popup": "edge-popup", "mpt_1_32": "MPT-1/32", "mpt_1_1": "MPT-1/1"}
DENSITY = 0.5
PARTS = {"mlp", "conv", "basis", "fashion"}
#: The weights' optimizer (dense networks, IMP): hidden-networks' and biprop's CIFAR-10 recipe, SGD lr 0.1, momentum
#: 0.9, weight decay 1e-4, cosine decay over the training (on MNIST-1D 69% at width 256 in a pilot, the demo's Adam
#: 1e-3 63%).
WEIGHTS = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "scheduler": "cosine"}
#: The scores' optimizer: the same with lr 1.0 (pilot, MNIST-1D width 256, one seed: 48% at the papers' 0.1, 56% at
#: 0.3, 57% at 1.0, 55% at 3.0 for edge-popup; 50%, 56%, 60% for MPT-1/32): 800 steps instead of the papers' ~40,000.
SCORES = {**WEIGHTS, "lr": 1.0}
#: MPT-1/1's: Adam, as biprop's binary-activation configs (there lr 0.1), lr 3e-3 with cosine decay (pilot: SGD
#: 45-49%, Adam 1e-2 55% on MNIST-1D but collapsing to chance on the conv net of width 32, Adam 3e-3 52% and 97%).
BINARY = {"optimizer": "adam", "lr": 3e-3, "scheduler": "cosine"}
ANCHORS = """Published, for comparison:
- Ramanujan et al. 2020 (edge-popup, CIFAR-10 Conv-2..8): as the networks get wider, the subnetwork of random
  weights closes the gap to the same network weight-trained and can pass it; best near k = 30-70% kept, signed
  Kaiming constant weights best.
- Diffenderfer & Kailkhura 2021 (biprop): MPT-1/32 94.8% on CIFAR-10 (ResNet-18, 80% pruned, learned BN), beating
  the trained full-precision network at large width; MPT-1/1 89-92% (VGG-Small at 1.25x width, 75% pruned).
- Zhou et al. 2019: a supermask on untrained weights reaches 86% on MNIST (FC).
- Alabdulmohsin et al. 2021: the lottery ticket results hold in other bases (IMP on DCT coefficients finds matching
  subnetworks), and a suitable basis such as the DCT can keep accuracy at fewer coefficients than plain weights."""


class SubnetClassifier(Classifier):
    """A zoo ``Classifier`` whose network is ``body`` (activations as modules, so MPT-1/1 can swap them for sign);
    with ``train_biases=False`` the biases stay at their initial zeros (the supermask papers' layers have none)."""

    def __init__(self, body: nn.Module, train_biases: bool = True, **optim: Any) -> None:
        super().__init__("mlp", {"in_features": 1, "hidden": [1], "num_classes": 1}, **optim)  # replaced just below
        self.model = body
        for module in body.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                module.bias.requires_grad_(train_biases)


def mlp(width: int) -> nn.Module:
    """The layers and initialization of ``Classifier("mlp", {"in_features": 40, "hidden": [w, w], ...})``, with
    the ReLUs as modules."""
    zoo = Classifier("mlp", {"in_features": 40, "hidden": [width, width], "num_classes": 10}).model
    return nn.Sequential(nn.Flatten(), zoo.hidden[0], nn.ReLU(), zoo.hidden[1], nn.ReLU(), zoo.out)


def lenet(width: int = 300) -> nn.Module:
    """LeNet-300-100 (``Classifier("lenet_300_100", {})``'s layers and initialization), ReLUs as modules; ``width``
    is the first hidden layer's (300), the second has a third of it."""
    zoo = Classifier("mlp", {"in_features": 784, "hidden": [width, width // 3], "num_classes": 10}).model
    return nn.Sequential(nn.Flatten(), zoo.hidden[0], nn.ReLU(), zoo.hidden[1], nn.ReLU(), zoo.out)


def conv2(width: int) -> nn.Module:
    """Conv-2 scaled by ``width`` on 8x8 single-channel images given flat (the digits' 64 features)."""
    body = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * width, 4 * width), nn.ReLU(), nn.Linear(4 * width, 4 * width), nn.ReLU(),
        nn.Linear(4 * width, 10),
    )
    for module in body.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
    return body


def supermask(method: str, seed: int) -> SupermaskCallback:
    if method == "edge_popup":
        return SupermaskCallback(density=DENSITY, method="edge_popup", weight_init="signed_constant", seed=seed)
    return SupermaskCallback(density=DENSITY, method="biprop", weight_init="kaiming_normal", scale_fan=True,
                             binary_activations=method == "mpt_1_1", seed=seed)


def train(body: nn.Module, method: str, data: L.LightningDataModule, epochs: int, seed: int, folder: str,
          name: str) -> float:
    """One training of ``body`` (dense: its weights; otherwise a supermask of ``method``); the final val_acc."""
    callbacks = [] if method == "dense" else [supermask(method, seed)]
    optim = WEIGHTS if method == "dense" else BINARY if method == "mpt_1_1" else SCORES
    model = SubnetClassifier(body, train_biases=method == "dense", **optim)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, check_val_every_n_epoch=epochs,
                        num_sanity_val_steps=0, log_every_n_steps=10, callbacks=callbacks, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        logger=CSVLogger(folder, name=name, version=f"seed_{seed}"))
    trainer.fit(model, data)
    return float(trainer.callback_metrics["val_acc"])


def interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    half = student_t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean of ``a`` minus mean of ``b`` with its 95% Welch interval."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = student_t_quantile(0.975, df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def cell(stats: tuple[float, float | None, float | None], signed: bool = False) -> str:
    mean, low, high = stats
    fmt = "{:+.2f}" if signed else "{:.2f}"
    text = fmt.format(100 * mean)
    return text + (f" [{fmt.format(100 * low)}, {fmt.format(100 * high)}]" if low is not None else "")


def widths_part(part: str, widths: Sequence[int], seeds: Sequence[int], epochs: int, out: str,
                methods: Sequence[str]) -> str:
    """``mlp`` or ``conv``: every method at every width and seed; the table (Markdown), also written to out."""
    if part == "mlp":
        data: L.LightningDataModule = MNIST1DDataModule(batch_size=100, seed=42)
        build = mlp
    elif part == "fashion":  # the 10,000 test images as the val set, as Zhou et al. report test accuracy
        data, build = FashionMNISTDataModule(batch_size=128, val_size=0), lenet
    else:
        data, build = DigitsDataModule(batch_size=64, seed=0), conv2
    folder = os.path.join(out, part)
    results: dict[tuple[int, str], list[float]] = {}
    sizes = {}
    for width in widths:
        for seed in seeds:
            for method in methods:
                L.seed_everything(seed, verbose=False)
                body = build(width)
                sizes[width] = sum(m.weight.numel() for m in body.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
                started = time.perf_counter()
                acc = train(body, method, data, epochs, seed, folder, f"w{width}_{method}")
                results.setdefault((width, method), []).append(acc)
                print(f"{part}: width {width} {method} seed {seed}: val_acc {acc:.4f}"
                      f" ({time.perf_counter() - started:.1f} s)", flush=True)
        subnets = [os.path.join(folder, f"w{width}_{m}", f"seed_{s}") for m in methods if m != "dense" for s in seeds]
        if subnets and lt_lightning(["report", *subnets, "--out", os.path.join(folder, f"report_w{width}")]) != 0:
            raise SystemExit(f"lt-lightning report of {part} width {width} failed")
    header = ["width", "weights", *(f"{LABELS[m]} (%)" for m in methods),
              *(f"{LABELS[m]} - dense" for m in methods if m != "dense" and "dense" in methods)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for width in widths:
        cells = [str(width), f"{sizes[width]:,}", *(cell(interval(results[(width, m)])) for m in methods)]
        if "dense" in methods:
            cells += [cell(welch(results[(width, m)], results[(width, "dense")]), signed=True)
                      for m in methods if m != "dense"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    with open(os.path.join(out, f"{part}.md"), "w") as f:
        f.write(table + "\n")
    if len(widths) > 1:
        plot_widths(part, widths, methods, results, os.path.join(out, f"{part}_width.png"))
    return table


def plot_widths(part: str, widths: Sequence[int], methods: Sequence[str], results: dict[tuple[int, str], list[float]],
                path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for method in methods:
        stats = [interval(results[(w, method)]) for w in widths]
        errors = [[100 * (m - lo) if lo is not None else 0 for m, lo, _ in stats],
                  [100 * (hi - m) if hi is not None else 0 for m, _, hi in stats]]
        ax.errorbar(widths, [100 * m for m, _, _ in stats], yerr=errors, fmt="o-" if method == "dense" else "s--",
                    capsize=3, label=LABELS[method])
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(widths), [str(w) for w in widths])
    ax.set_xlabel("width")
    ax.set_ylabel("final val_acc (%)")
    what = "MLP 40-w-w-10 on MNIST-1D" if part == "mlp" else "Conv-2 of width w on the 8x8 digits"
    ax.set_title(f"{what}:\nsubnetworks of untrained weights ({100 * DENSITY:.0f}% kept) vs. the weights trained")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def basis_part(seeds: Sequence[int], rounds: int, epochs: int, out: str) -> str:
    """IMP in the DCT basis against the identity basis, paired by seed (the same initial weights)."""
    data = MNIST1DDataModule(batch_size=100, seed=42)
    histories: dict[str, list[list[Any]]] = {"identity": [], "dct": []}
    for seed in seeds:
        for basis in histories:
            L.seed_everything(seed, verbose=False)
            model = Classifier("mlp", {"in_features": 40, "hidden": [256, 256], "num_classes": 10}, **WEIGHTS)
            imp = IMPCallback(rounds=rounds, pruning_fraction=0.5, allocation="global", include=COEFFICIENTS,
                              monitor="val_acc", mode="max")
            trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                                log_every_n_steps=10,
                                callbacks=[BasisCallback(basis), RewindCallback(step=0), imp],
                                logger=CSVLogger(os.path.join(out, "basis"), name=basis, version=f"seed_{seed}"))
            started = time.perf_counter()
            trainer.fit(model, data)
            histories[basis].append(imp.history)
            print(f"basis: {basis} seed {seed}: " + ", ".join(
                f"{100 * r.density:.3g}% {r.final['val_acc']:.4f}" for r in imp.history)
                + f" ({time.perf_counter() - started:.1f} s)", flush=True)

    def by_density(basis: str) -> dict[float, list[float]]:
        return {histories[basis][0][r].density: [h[r].final["val_acc"] for h in histories[basis]]
                for r in range(1, rounds + 1)}

    # The DCT tickets as "ticket", the identity basis's as a control: matching dense (the DCT round 0) and a paired
    # one-sided t-test over seeds of DCT > identity at each density.
    rows = compare(dense=[h[0].final["val_acc"] for h in histories["dct"]], ticket=by_density("dct"),
                   controls={"identity": by_density("identity")})
    dense_identity = interval([h[0].final["val_acc"] for h in histories["identity"]])
    dense_dct = interval([h[0].final["val_acc"] for h in histories["dct"]])
    lines = ["| % weights (coefficients) remaining | identity basis (%) | DCT basis (%) | DCT - identity (paired) |"
             " p (DCT > identity) | DCT matching its dense |", "|---:|---:|---:|---:|---:|---|",
             f"| 100 (dense) | {cell(dense_identity)} | {cell(dense_dct)} | | | |"]
    for row in rows:
        versus = row["controls"]["identity"]
        p = "n/a" if versus["p_value"] is None else f"{versus['p_value']:.3g}"
        lines.append(f"| {100 * row['density']:.3g} | {cell((versus['mean'], versus['ci_low'], versus['ci_high']))} |"
                     f" {cell((row['ticket_mean'], row['ticket_ci_low'], row['ticket_ci_high']))} |"
                     f" {cell((versus['diff_mean'], versus['diff_ci_low'], versus['diff_ci_high']), signed=True)} |"
                     f" {p} | {'yes' if row['matching'] else 'no'} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "basis.md"), "w") as f:
        f.write(table + "\n")
    plot_basis(rows, dense_identity, os.path.join(out, "basis_dct_vs_identity.png"))
    return table


def plot_basis(rows: Sequence[dict[str, Any]], dense_identity: tuple[float, Any, Any], path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = [100 * r["density"] for r in rows]
    for label, key in (("DCT basis", None), ("identity basis", "identity")):
        stats = [(r["ticket_mean"], r["ticket_ci_low"], r["ticket_ci_high"]) if key is None else
                 (r["controls"][key]["mean"], r["controls"][key]["ci_low"], r["controls"][key]["ci_high"])
                 for r in rows]
        errors = [[100 * (m - lo) if lo is not None else 0 for m, lo, _ in stats],
                  [100 * (hi - m) if hi is not None else 0 for m, _, hi in stats]]
        ax.errorbar(x, [100 * m for m, _, _ in stats], yerr=errors, fmt="o-", capsize=3, label=f"IMP, {label}")
    ax.axhline(100 * rows[0]["dense_mean"], color="grey", linestyle=":", label="dense, DCT basis")
    ax.axhline(100 * dense_identity[0], color="black", linestyle=":", label="dense, identity basis")
    ax.set_xscale("log")
    ax.set_xlim(max(x) * 1.2, min(x) / 1.2)
    ax.set_xticks(x, [f"{v:.3g}" for v in x])
    ax.minorticks_off()
    ax.set_xlabel("weights (coefficients) remaining (%, log scale)")
    ax.set_ylabel("final val_acc (%)")
    ax.set_title("IMP on MNIST-1D MLP 40-256-256-10: DCT coefficients vs. plain weights")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="PART", help="mlp, conv, basis (default: these three), fashion")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024], help="MLP widths")
    parser.add_argument("--conv-widths", type=int, nargs="+", default=[4, 8, 16, 32], help="Conv-2 widths")
    parser.add_argument("--epochs", type=int, default=20, help="epochs a training (MNIST-1D: 40 steps each)")
    parser.add_argument("--conv-epochs", type=int, default=20, help="epochs a training on the digits (22 steps each)")
    parser.add_argument("--rounds", type=int, default=5, help="IMP rounds of the basis part")
    parser.add_argument("--fashion-epochs", type=int, default=3, help="epochs on Fashion-MNIST (469 steps each)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--out", default=os.path.join("lt_logs", "strong"))
    args = parser.parse_args()
    args.parts = args.parts or ["mlp", "conv", "basis"]
    if set(args.parts) - PARTS:
        parser.error(f"unknown parts {sorted(set(args.parts) - PARTS)}; choose from {sorted(PARTS)}")
    quiet(1)
    warnings.filterwarnings("ignore", ".*is an instance of `nn.Module` and is already saved.*")  # the body, by design
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    started = time.perf_counter()
    tables = {}
    if "mlp" in args.parts:
        tables["mlp"] = widths_part("mlp", args.widths, args.seeds, args.epochs, args.out, args.methods)
    if "conv" in args.parts:
        tables["conv"] = widths_part("conv", args.conv_widths, args.seeds, args.conv_epochs, args.out, args.methods)
    if "fashion" in args.parts:
        tables["fashion"] = widths_part("fashion", [300], args.seeds, args.fashion_epochs, args.out, args.methods)
    if "basis" in args.parts:
        tables["basis"] = basis_part(args.seeds, args.rounds, args.epochs, args.out)
    for part, table in tables.items():
        print(f"\n## {part}\n\n{table}")
    print(f"\n{ANCHORS}\n\ndone in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
