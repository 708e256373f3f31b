"""Lottery tickets on MNIST-1D: iterative magnitude pruning (IMP) of an MLP, against randomly re-initialised controls.

The setup of the MNIST-1D lottery-ticket notebook (Greydanus & Kobak): an MLP on the 4000/1000 MNIST-1D split,
Adam at 2e-2, batch 100, a fixed number of steps per round, rewinding to the initialization (step 0) after every
round. Every round's ticket is then trained again from a *new* random initialization with the ticket's masks
(``MaskingCallback(ticket=..., ticket_weights=False)``): if the ticket beats that control, the initialization matters.

Defaults: MLP 40-256-256-10 (the notebook's is 40-500-500-10, 3.5x the weights: ``--hidden 500 500``, about
4.5 minutes instead of about 2.5 on 2 CPU cores), 1500 steps a round, 10 rounds pruning 25% of the remaining weights
of every layer (``allocation="layerwise"``, as the notebook prunes each layer to the same sparsity; ``--allocation
global`` uses one threshold, which on this MLP gives tickets no better than their controls). Other differences from the
notebook: its MLP adds a residual connection around the second layer and also masks biases, it prunes in 100 small
steps, and its "random" baseline is a random mask, not the ticket's mask on a new initialization.

All IMP rounds run inside one ``trainer.fit``. Validation runs every ``--val-every`` steps by global step
(``val_check_interval`` with ``check_val_every_n_epoch=None``); ``--steps`` must be a multiple of it, so that every
round ends on a validation and its "final" accuracy is the accuracy of the network the round ended with.

    python examples/mnist1d_imp.py                      # the `make demo` run
    python examples/mnist1d_imp.py --rounds 3 --steps 300   # a quick look

Writes ``<out>/mnist1d_imp.png`` (accuracy vs. % of weights remaining), ``<out>/mnist1d_imp.md`` (the table) and
the CSV logs and ticket files under ``<out>/``.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lt_lightning import IMPCallback, MaskingCallback, RewindCallback
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.zoo import Classifier, MNIST1DDataModule

# Published numbers of the MNIST-1D lottery notebook (MLP 40-500-500-10, 1501 steps per round), see ANCHORS.md.
ANCHOR = (
    "MNIST-1D lottery notebook (MLP 40-500-500-10, Adam 2e-2, batch 100, 1501 steps/round): dense 61-66%;"
    " tickets at 90-92% sparsity 74-76% vs. random masks at 90% 60-66%; at 99% sparsity ticket 42% vs. random 15-17%."
)


class ValRecorder(L.Callback):
    """Records (global step, val_loss, val_acc) after every validation run."""

    def __init__(self) -> None:
        self.records: list[tuple[int, float, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        m = trainer.callback_metrics
        self.records.append((trainer.global_step, float(m["val_loss"]), float(m["val_acc"])))


def make_trainer(args: argparse.Namespace, name: str, callbacks: list[L.Callback]) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=20,  # an epoch is 40 steps; Lightning warns when the interval is longer
        logger=CSVLogger(args.out, name=name),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
        default_root_dir=args.out,
    )


def make_model(args: argparse.Namespace) -> Classifier:
    return Classifier("mlp", {"in_features": 40, "hidden": args.hidden, "num_classes": 10}, optimizer="adam", lr=args.lr)


def run_imp(args: argparse.Namespace, datamodule: MNIST1DDataModule) -> tuple[IMPCallback, ValRecorder]:
    L.seed_everything(args.seed, verbose=False)
    model = make_model(args)
    imp = IMPCallback(rounds=args.rounds, pruning_fraction=args.fraction, allocation=args.allocation,
                      layer_fractions={r"out\.weight": args.out_fraction} if args.out_fraction else None)
    recorder = ValRecorder()
    trainer = make_trainer(args, "mnist1d_imp", [RewindCallback(step=0), imp, recorder])
    trainer.fit(model, datamodule)
    return imp, recorder


def run_control(args: argparse.Namespace, datamodule: MNIST1DDataModule, ticket: str, round_: int) -> ValRecorder:
    """A fresh model (another seed) trained with the ticket's masks only, for the same steps, validated the same way."""
    L.seed_everything(args.seed + 1 + round_, verbose=False)
    model = make_model(args)
    recorder = ValRecorder()
    trainer = make_trainer(args, "mnist1d_control", [MaskingCallback(ticket=ticket, ticket_weights=False), recorder])
    trainer.fit(model, datamodule)
    return recorder


def summary(records: list[tuple[int, float, float]]) -> dict[str, Any]:
    """Final and best val acc, and the early-stopping step (the step of the lowest val loss, Frankle & Carbin)."""
    step_min_loss = min(records, key=lambda r: r[1])[0]
    return {"final": records[-1][2], "best": max(r[2] for r in records), "best_step": step_min_loss}


def check_round_ends(imp: IMPCallback, recorder: ValRecorder, steps: int) -> None:
    """Each round's recorded final val_acc must be the validation at that round's last step."""
    by_step = {s: acc for s, _, acc in recorder.records}
    for record in imp.history:
        end = steps * (record["round"] + 1)  # rewind to step 0: round r ends at global step (r + 1) * steps
        got, expected = record["final"]["val_acc"], by_step.get(end)
        if expected is None or abs(got - expected) > 1e-7:
            raise RuntimeError(f"round {record['round']}: history's final val_acc {got} is not the validation at"
                               f" the round's end (global step {end}: {expected}).")


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| round | % weights remaining | ticket val acc | control val acc | ticket best | control best"
            " | ticket early-stop step | control early-stop step |")
    lines = [head, "|" + "|".join(["---:"] * 8) + "|"]
    for r in rows:
        lines.append(
            f"| {r['round']} | {100 * r['density']:.2f} | {100 * r['ticket']['final']:.1f} |"
            f" {100 * r['control']['final']:.1f} | {100 * r['ticket']['best']:.1f} | {100 * r['control']['best']:.1f} |"
            f" {r['ticket']['best_step']} | {r['control']['best_step']} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [100 * r["density"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(x, [100 * r["ticket"]["final"] for r in rows], "o-", label="winning ticket (rewound to init)")
    ax.plot(x, [100 * r["control"]["final"] for r in rows], "s--", label="random re-init, same masks")
    ax.axhline(100 * rows[0]["ticket"]["final"], color="gray", ls="--", lw=1, label="dense")
    ax.set_xscale("log")
    ax.set_xlim(max(x) * 1.15, min(x) / 1.15)  # reversed: from 100% down to the sparsest ticket
    ax.set_xticks(x)
    ax.set_xticklabels([f"{v:.3g}" for v in x], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("% of weights remaining")
    ax.set_ylabel("val accuracy at the round's end (%)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="pruning rounds after the dense round 0")
    parser.add_argument("--fraction", type=float, default=0.25, help="fraction of remaining weights pruned per round")
    parser.add_argument("--out-fraction", type=float, default=0.0,
                        help="per-round pruning fraction of the output layer (0: prune it with the others)")
    parser.add_argument("--allocation", default="layerwise", choices=["global", "layerwise"],
                        help="one magnitude threshold over all layers, or the same density in every layer")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps per round (and per control)")
    parser.add_argument("--val-every", type=int, default=100, help="validate every this many steps")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer widths")
    parser.add_argument("--lr", type=float, default=2e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 1 is fastest for these small matmuls and robust on shared cores")
    parser.add_argument("--out", default="outputs", help="folder for the plot, table, logs and tickets")
    args = parser.parse_args()
    if args.steps % args.val_every:
        parser.error(f"--steps {args.steps} must be a multiple of --val-every {args.val_every}")

    started = time.perf_counter()
    quiet(args.threads)
    os.makedirs(args.out, exist_ok=True)
    datamodule = MNIST1DDataModule(batch_size=100, seed=42)

    imp, ticket_rec = run_imp(args, datamodule)
    check_round_ends(imp, ticket_rec, args.steps)
    imp_time = time.perf_counter() - started

    rows = []
    per_round = {r: [rec for rec in ticket_rec.records if r * args.steps < rec[0] <= (r + 1) * args.steps]
                 for r in range(len(imp.history))}
    for record in imp.history:
        r = record["round"]
        control = run_control(args, datamodule, record["ticket"], r)
        # IMPCallback's own record; check_round_ends and the assertion tie it to the recorded validations.
        ticket = {"final": record["final"]["val_acc"], "best": record["best"]["val_acc"], "best_step": record["best_step"]}
        mine = summary(per_round[r])
        assert abs(mine["best"] - ticket["best"]) < 1e-7 and mine["best_step"] - r * args.steps == ticket["best_step"], (
            mine, ticket)
        rows.append({"round": r, "density": record["density"], "ticket": ticket, "control": summary(control.records)})
    control_time = time.perf_counter() - started - imp_time

    n_weights = sum(p.numel() for n, p in make_model(args).named_parameters() if n.endswith("weight"))
    title = (f"MNIST-1D MLP 40-{'-'.join(map(str, args.hidden))}-10 ({n_weights:,} prunable weights),"
             f" {args.steps} steps/round, {args.allocation} pruning")
    text = table(rows)
    dense = rows[0]["ticket"]["final"]
    note = (f"Dense val acc {100 * dense:.1f}% (seed {args.seed}; the round-0 control is the same dense net from seed"
            f" {args.seed + 1}). Validation every {args.val_every} steps on the 1000-sample test split; 'val acc' is at"
            " the round's last step, 'best' the highest seen, early-stop step the step of the lowest val loss.")
    print()
    print(title)
    print(text)
    print()
    print(note)
    near10 = min(rows, key=lambda r: abs(r["density"] - 0.1))
    ours = (f"This run ({args.allocation} pruning): dense {100 * dense:.1f}%; at {100 * near10['density']:.1f}% of the"
            f" weights ticket {100 * near10['ticket']['final']:.1f}% vs. re-init control"
            f" {100 * near10['control']['final']:.1f}%; at {100 * rows[-1]['density']:.1f}% ticket"
            f" {100 * rows[-1]['ticket']['final']:.1f}% vs. control {100 * rows[-1]['control']['final']:.1f}%.")
    print(f"# Compare: {ANCHOR}")
    print(f"# {ours}")
    with open(os.path.join(args.out, "mnist1d_imp.md"), "w") as f:
        f.write(f"# {title}\n\n{text}\n\n{note}\n\nCompare: {ANCHOR}\n\n{ours}\n")
    plot(rows, os.path.join(args.out, "mnist1d_imp.png"), title)
    total = time.perf_counter() - started
    print(f"Wrote {os.path.join(args.out, 'mnist1d_imp.png')} and {os.path.join(args.out, 'mnist1d_imp.md')}.")
    print(f"Total wall time: {total:.1f} s (IMP {imp_time:.1f} s, controls {control_time:.1f} s,"
          f" torch threads {torch.get_num_threads()}).")


if __name__ == "__main__":
    main()
