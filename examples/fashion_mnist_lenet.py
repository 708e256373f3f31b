"""LeNet-300-100 lottery tickets on Fashion-MNIST with Frankle & Carbin's (2019) recipe.

Adam at 1.2e-3, batch 60; each round prunes 20% of the remaining hidden-layer weights and 10% of the output layer's
(``layer_fractions={r"out\\.weight": 0.1}``), then rewinds to the initialization. All rounds run inside one
``trainer.fit``; validation (5000 held-out training images) runs every ``--val-every`` optimizer steps, and ``--steps``
is a multiple of it, so each round's final accuracy is measured at the round's last step.

The defaults are small enough for a CPU in about two minutes; the paper's scale is ``--steps 50000 --rounds 20``
(Frankle & Carbin used MNIST; ``--val-every 100`` matches their evaluation interval).

Fashion-MNIST is read from the four IDX files in ``--data-dir`` (Debian/Ubuntu: ``apt-get install
dataset-fashion-mnist`` puts them in /usr/share/datasets/fashion-mnist); ``--download`` fetches them with
torchvision instead (needs internet).
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger

from lt_lightning import IMPCallback, RewindCallback
from lt_lightning.experiments.configs import quiet_console as quiet
from lt_lightning.zoo import Classifier, FashionMNISTDataModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--download", action="store_true", help="download with torchvision into --data-dir")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="pruning rounds after the dense round 0")
    parser.add_argument("--fraction", type=float, default=0.2, help="per-round pruning fraction of hidden layers")
    parser.add_argument("--out-fraction", type=float, default=0.1, help="per-round pruning fraction of the output layer")
    parser.add_argument("--val-every", type=int, default=250, help="validate every this many steps")
    parser.add_argument("--lr", type=float, default=1.2e-3)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default="outputs", help="folder for the CSV logs, history and tickets")
    args = parser.parse_args()
    if args.steps % args.val_every:
        parser.error(f"--steps {args.steps} must be a multiple of --val-every {args.val_every}")

    started = time.perf_counter()
    quiet(args.threads)

    L.seed_everything(args.seed, verbose=False)
    datamodule = FashionMNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_size=5000,
                                        download=args.download, seed=args.seed)
    model = Classifier("lenet_300_100", optimizer="adam", lr=args.lr)
    imp = IMPCallback(rounds=args.rounds, pruning_fraction=args.fraction,
                      layer_fractions={r"out\.weight": args.out_fraction})
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.steps,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        logger=CSVLogger(args.out, name="fashion_mnist_lenet"),
        callbacks=[RewindCallback(step=0), imp],
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        deterministic=True,
        default_root_dir=args.out,
    )
    trainer.fit(model, datamodule)

    print(f"\nLeNet-300-100 on Fashion-MNIST, {args.steps} steps/round, validation every {args.val_every} steps"
          " on 5000 held-out training images")
    print("| round | % weights remaining | out.weight % | final val acc | best val acc | early-stop step | round s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in imp.history:
        print(f"| {r['round']} | {100 * r['density']:.1f} | {100 * r['layer_density']['model.out.weight']:.1f} |"
              f" {100 * r['final']['val_acc']:.2f} | {100 * r['best']['val_acc']:.2f} | {r['best_step']} |"
              f" {r['wall_time_s']:.1f} |")
    print("Early-stop step: the step of the round's lowest validation loss (Frankle & Carbin's early-stopping"
          " iteration). Density counts the Linear weights only (biases are not pruned).")
    print(f"History and tickets: {trainer.log_dir}")
    print(f"Total wall time: {time.perf_counter() - started:.1f} s (torch threads {torch.get_num_threads()}).")


if __name__ == "__main__":
    main()
