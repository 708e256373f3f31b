"""Evidence for dynamic sparse training against lottery tickets (docs/RESULTS.md): at equal training steps, static
random ERK vs. SET vs. RigL (ERK and uniform) vs. gradual magnitude pruning vs. IMP, and early-bird tickets.

Each training has the same length (``--steps`` optimizer steps); IMP needs several (its extra cost is shown in total
optimizer steps). Per density and seed:

- ``static``: ``PruneAtInitCallback(method="random", allocation="erk")`` (fixed random ERK masks, the baseline);
- ``set`` / ``rigl`` / ``rigl_uniform``: masks updated every ``--update-every`` steps until 75% of training, drop
  fraction 0.3 decaying by a cosine (Evci et al. 2020's defaults), ERK (or uniform) layer densities;
- ``gmp``: Zhu & Gupta's cubic schedule from dense to the density between 10% and 75% of training, every
  ``--update-every`` steps;
- ``imp``: IMP with rewinding to the initialization, global magnitude pruning, ``--imp-rounds`` rounds ending exactly
  at the density: the ticket's accuracy at the end of its last round;
- ``early_bird``: dense training watched by ``EarlyBirdCallback`` (masks at the density compared every epoch, Hamming
  distance below 0.1 for 3 checks; ``--early-bird-every``); the drawn ticket is then trained from the initialization, against the
  one-shot IMP ticket drawn after the full dense training (``one_shot``).

    python examples/sparse_training.py mnist1d --out lt_logs/sparse         # about 10 minutes on 2 CPU cores
    python examples/sparse_training.py fashion_mnist --densities 0.1         # LeNet-300-100, about 10 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import lightning as L

from lt_lightning import (
    EarlyBirdCallback,
    GMPCallback,
    IMPCallback,
    MaskingCallback,
    PruneAtInitCallback,
    RewindCallback,
    RigLCallback,
    SETCallback,
)
from lt_lightning.analysis import student_t_quantile
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.zoo import Classifier, FashionMNISTDataModule, MNIST1DDataModule

METHODS = ("static", "set", "rigl", "rigl_uniform", "gmp", "imp", "early_bird", "one_shot")


def model_and_data(task: str) -> tuple[Classifier, L.LightningDataModule]:
    if task == "mnist1d":
        model = Classifier("mlp", {"in_features": 40, "hidden": [256, 256], "num_classes": 10}, optimizer="adam",
                           lr=1e-3)
        return model, MNIST1DDataModule(batch_size=100, seed=42)
    return Classifier("lenet_300_100", {}, optimizer="adam", lr=1.2e-3), FashionMNISTDataModule(batch_size=60)


def fit(task: str, seed: int, steps: int, callbacks: list[L.Callback], ckpt_dir: str) -> tuple[float, int]:
    """Train a fresh model (seeded) with ``callbacks``; the final val accuracy and the optimizer steps taken."""
    L.seed_everything(seed, verbose=False)
    model, data = model_and_data(task)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                        default_root_dir=ckpt_dir, val_check_interval=1.0)
    trainer.fit(model, data)
    accuracy = float(trainer.validate(model, data, verbose=False)[0]["val_acc"])
    return accuracy, trainer.global_step


def run_method(method: str, task: str, density: float, seed: int, args: argparse.Namespace, folder: str) -> dict:
    steps, every = args.steps, args.update_every
    sparse = {"density": density, "update_every": every, "drop_fraction": 0.3, "stop": 0.75,
              "allow_dense_layers": True, "seed": seed, "dirpath": folder}
    if method == "static":
        callbacks = [PruneAtInitCallback(method="random", density=density, allocation="erk", seed=seed)]
    elif method in ("rigl", "rigl_uniform"):
        callbacks = [RigLCallback(distribution="uniform" if method == "rigl_uniform" else "erk", **sparse)]
    elif method == "set":
        callbacks = [SETCallback(distribution="erk", **sparse)]
    elif method == "gmp":
        callbacks = [GMPCallback(initial=1.0, final=density, start=int(0.1 * steps), end=int(0.75 * steps),
                                 every=every, allocation="global", dirpath=folder)]
    elif method == "imp":
        fraction = 1 - density ** (1 / args.imp_rounds)
        imp = IMPCallback(rounds=args.imp_rounds, pruning_fraction=fraction, dirpath=folder, monitor="val_acc",
                          mode="max")
        accuracy, total = fit(task, seed, steps, [RewindCallback(step=0), imp], folder)
        return {"acc": imp.history[-1]["final"]["val_acc"], "steps": total, "density": imp.history[-1]["density"]}
    elif method == "one_shot":
        imp = IMPCallback(rounds=1, pruning_fraction=1 - density, dirpath=folder, monitor="val_acc", mode="max")
        accuracy, total = fit(task, seed, steps, [RewindCallback(step=0), imp], folder)
        return {"acc": imp.history[-1]["final"]["val_acc"], "steps": total, "density": imp.history[-1]["density"]}
    else:  # early_bird: dense training until the masks settle, then the drawn ticket trained from the initialization
        bird = EarlyBirdCallback(density=density, distance=0.1, window=3, every=args.early_bird_every, dirpath=folder)
        _, drawn_after = fit(task, seed, steps, [bird], folder)
        ticket = os.path.join(folder, "tickets", "early_bird.pt")
        if not os.path.isfile(ticket):
            return {"acc": float("nan"), "steps": drawn_after, "density": density, "drawn_step": None}
        accuracy, trained = fit(task, seed, steps, [MaskingCallback(ticket=ticket)], folder)
        return {"acc": accuracy, "steps": drawn_after + trained, "density": density, "drawn_step": drawn_after}
    accuracy, total = fit(task, seed, steps, callbacks, folder)
    return {"acc": accuracy, "steps": total, "density": density}


def interval(values: list[float]) -> str:
    values = [v for v in values if v == v]
    if len(values) < 2:
        return f"{100 * values[0]:.2f}" if values else "n/a"
    mean = statistics.mean(values)
    half = student_t_quantile(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{100 * mean:.2f} [{100 * (mean - half):.2f}, {100 * (mean + half):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=["mnist1d", "fashion_mnist"])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.2, 0.1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps a training (default: per task)")
    parser.add_argument("--update-every", type=int, default=None)
    parser.add_argument("--imp-rounds", type=int, default=4)
    parser.add_argument("--early-bird-every", default="1ep", help="how often early-bird compares masks (a Step)")
    parser.add_argument("--out", default=os.path.join("lt_logs", "sparse"))
    args = parser.parse_args()
    args.steps = args.steps or (800 if args.task == "mnist1d" else 1000)
    args.update_every = args.update_every or args.steps // 16
    quiet(1)
    started = time.perf_counter()
    results: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for density in args.densities:
        for seed in args.seeds:
            for method in args.methods:
                folder = os.path.join(args.out, args.task, f"d{density}", method, f"seed_{seed}")
                result = run_method(method, args.task, density, seed, args, folder)
                results.setdefault((density, method), []).append(result)
                print(f"{args.task} density {density} {method} seed {seed}: val_acc {result['acc']:.3f},"
                      f" {result['steps']} steps ({time.perf_counter() - started:.0f} s)", flush=True)
    lines = [f"{args.task}: {args.steps} optimizer steps a training, update every {args.update_every}, seeds"
             f" {args.seeds}; val acc % (mean [95% interval])", "",
             "| % weights remaining | method | val acc (%) | optimizer steps |", "|---:|---|---:|---:|"]
    for (density, method), rows in results.items():
        steps = statistics.mean(r["steps"] for r in rows)
        drawn = [r["drawn_step"] for r in rows if r.get("drawn_step") is not None]
        note = f" (drawn at step {statistics.mean(drawn):.0f} of {args.steps})" if drawn else ""
        lines.append(f"| {100 * density:.3g} | {method} | {interval([r['acc'] for r in rows])} | {steps:.0f}{note} |")
    table = "\n".join(lines)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{args.task}.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, f"{args.task}.json"), "w") as f:
        json.dump({f"{d}/{m}": rows for (d, m), rows in results.items()}, f, indent=1)
    print(table)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
