"""Evidence for "is it a winning ticket?" (docs/RESULTS.md): tickets against controls over seeds, and Su et al.'s
sanity check of pruning at initialization.

- ``lenet``: LeNet-300-100 on Fashion-MNIST (``examples/configs/fashion_mnist_lenet_seeds.yaml``), for each seed one
  IMP run (`lt-lightning fit`), the controls ``reinit`` and ``shuffle_masks`` of every pruned round's ticket
  (`lt-lightning branch`), then `lt-lightning report` over the seeds. About 15 minutes on 2 CPU cores.
- ``sanity``: Su et al. 2020's check on the MNIST-1D MLP of ``make demo`` (same training): SNIP, GraSP and SynFlow
  masks at each density, each trained as found and with every layer's mask randomly rearranged on the same initial
  weights (``shuffle_masks``), over seeds; a method whose masks carry information loses accuracy when rearranged.
  About 3 minutes.

    python examples/winning_tickets.py lenet sanity --out lt_logs/evidence
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

import lightning as L
import torch

from lt_lightning import MaskingCallback, Ticket
from lt_lightning.analysis import compare
from lt_lightning.cli import main as lt_lightning
from lt_lightning.controls import make_control
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.masks import Masks, select_parameters
from lt_lightning.pruning import ScoreContext, prune_iteratively
from lt_lightning.pruning.schedule import one_shot, synflow_exponential
from lt_lightning.zoo import Classifier, MNIST1DDataModule

HERE = os.path.dirname(os.path.abspath(__file__))


def run(command: list[str]) -> None:
    if lt_lightning(command) != 0:
        raise SystemExit(f"lt-lightning {' '.join(command)} failed")


def lenet(out: str, seeds: list[int]) -> None:
    config = os.path.join(HERE, "configs", "fashion_mnist_lenet_seeds.yaml")
    runs = []
    for seed in seeds:
        run_dir = os.path.join(out, "fashion_mnist_lenet_seeds", f"seed_{seed}")
        if not os.path.isfile(os.path.join(run_dir, "imp_history.json")):
            shutil.rmtree(run_dir, ignore_errors=True)
            run(["fit", "--config", config, f"--seed_everything={seed}", f"--trainer.logger.init_args.save_dir={out}",
                 f"--trainer.logger.init_args.version=seed_{seed}"])
        run(["branch", run_dir, "--control", "reinit", "shuffle_masks", "--seeds", str(1000 + seed)])
        runs.append(run_dir)
    run(["report", *runs, "--out", os.path.join(out, "lenet_report"), "--metric", "val_acc"])


# ------------------------------------------------------------------------------------------ Su et al.'s check
def _mlp() -> Classifier:
    return Classifier("mlp", {"in_features": 40, "hidden": [256, 256], "num_classes": 10}, optimizer="adam", lr=1e-3)


def _train(ticket: Ticket, folder: str, data: MNIST1DDataModule, seed: int) -> float:
    path = os.path.join(folder, "ticket.pt")
    ticket.save(path)
    L.seed_everything(seed, verbose=False)
    model = _mlp()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=20, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[MaskingCallback(path)])
    trainer.fit(model, data)
    return float(trainer.validate(model, data, verbose=False)[0]["val_acc"])


def _masks(method: str, model: Classifier, data: MNIST1DDataModule, density: float, seed: int) -> Masks:
    names = select_parameters(model)
    batch = next(iter(data.train_dataloader()))
    context = ScoreContext(model, Masks.dense(model, names), batches=[batch],
                           loss_fn=lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
                           generator=torch.Generator().manual_seed(seed), example_input=batch[0])
    schedule = synflow_exponential(density, 100) if method == "synflow" else one_shot(density)
    return prune_iteratively(context, schedule, score=method, allocation="global")


def sanity(out: str, seeds: list[int], densities: list[float]) -> None:
    data = MNIST1DDataModule(batch_size=100, seed=42)
    data.setup("fit")
    folder = os.path.join(out, "sanity")
    os.makedirs(folder, exist_ok=True)
    results: dict[tuple[str, float, str], list[float]] = {}
    for seed in seeds:
        for method in ("snip", "grasp", "synflow"):
            for density in densities:
                L.seed_everything(seed, verbose=False)
                model = _mlp()  # the initialization both variants train from
                init = {k: v.clone() for k, v in model.state_dict().items()}
                masks = _masks(method, model, data, density, seed)
                found = Ticket.from_state(init, masks, {"method": method})
                shuffled = make_control("shuffle_masks", found, seed=1000 + seed, init=init)
                for variant, ticket in (("as found", found), ("shuffle_masks", shuffled)):
                    acc = _train(ticket, folder, data, seed)
                    results.setdefault((method, density, variant), []).append(acc)
                    print(f"sanity: {method} density {density} {variant} seed {seed}: val_acc {acc:.3f}", flush=True)
    lines = ["| method | % weights remaining | as found (%) | shuffle_masks (%) | as found - shuffled [95% interval] |"
             " p (paired, one-sided) | shuffling hurts |", "|---|---:|---:|---:|---:|---:|---|"]
    for method in ("snip", "grasp", "synflow"):
        for density in densities:
            found, shuffled = results[(method, density, "as found")], results[(method, density, "shuffle_masks")]
            row = compare(dense=found, ticket={density: found}, controls={"shuffle_masks": {density: shuffled}})[0]
            versus = row["controls"]["shuffle_masks"]
            low, high, p = versus["diff_ci_low"], versus["diff_ci_high"], versus["p_value"]
            interval = f" [{100 * low:+.2f}, {100 * high:+.2f}]" if low is not None else ""
            lines.append(
                f"| {method} | {100 * density:.3g} | {100 * statistics.mean(found):.2f} |"
                f" {100 * statistics.mean(shuffled):.2f} | {100 * versus['diff_mean']:+.2f}{interval} |"
                f" {'n/a' if p is None else f'{p:.3g}'} | {'yes' if versus['beats'] else 'no'} |")
    table = "\n".join(lines)
    with open(os.path.join(out, "sanity.md"), "w") as f:
        f.write(table + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="+", choices=["lenet", "sanity"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--densities", type=float, nargs="+", default=[0.0625, 0.03125])
    parser.add_argument("--out", default=os.path.join("lt_logs", "evidence"))
    args = parser.parse_args()
    quiet(1)
    started = time.perf_counter()
    if "sanity" in args.parts:
        sanity(args.out, args.seeds, args.densities)
    if "lenet" in args.parts:
        lenet(args.out, args.seeds)
    print(f"done in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
