"""Per-optimizer-step cost of keeping a network sparse during training, inside the same Lightning loop.

Variants, each a fresh ``Classifier`` trained by a fresh ``L.Trainer`` (no logger, no checkpointing, no progress bar,
no validation):

- ``dense``: no callback;
- ``empty_callback``: a callback with no hooks of its own: what Lightning's dispatch of one more callback costs;
- ``lt_all_kept``: ``MaskingCallback`` with masks that keep every weight: its hooks run, enforcement has no work;
- ``lt_masks``: ``lt_lightning.MaskingCallback(ticket=...)`` with random masks at 20% density on every Linear/Conv
  weight (saved as a ``Ticket``); it multiplies the weights by the masks after every optimizer step
  (``MaskEnforcer.enforce_``; gradients are masked too, ``mask_grads_``, only when gradients are clipped, which
  this benchmark does not do);
- ``pl_pruning``: Lightning's ``ModelPruning("l1_unstructured", amount=0.8, parameter_names=["weight"])`` on the same
  weights, told to prune once (``apply_pruning=lambda epoch: epoch == 0``: at the end of epoch 0) and then keep its
  ``torch.nn.utils.prune`` forward pre-hooks (``weight = weight_orig * weight_mask`` recomputed at every forward), as
  a user of the callback would;
- ``torch_prune``: the same ``torch.nn.utils.prune.global_unstructured`` hooks applied by hand before ``fit``. The
  pruned ``weight_orig`` entries then get exactly-zero gradients from the first step on, so Adam's second moments
  stay exactly 0 there (``sqrt`` of zeros is slow on some CPUs); under ``pl_pruning`` they were trained for one
  epoch first and only decay.

What is timed: every fit runs a warm-up epoch (epoch 0, not timed; ``pl_pruning`` prunes at its end) and then
``--epochs`` timed epochs. A timing callback, first in the callback list, stamps ``time.perf_counter()`` at each
``on_train_batch_start``; a step's cost is the time from one stamp to the next within an epoch, so it includes
everything Lightning does for one optimizer step (the other callbacks' hooks, forward, backward, optimizer step, the
masking, the batch-end hooks, fetching the next batch from pre-built in-memory batches). Epoch boundaries are left
out. A fit's value is its mean ms/step; each (model, variant) is fitted ``--reps`` times, interleaved with all the
others in a shuffled order per repetition, and the table shows the median over repetitions and the ratio of medians
to ``dense``. Inputs are MNIST-shaped (1x28x28) standard-normal tensors and random labels, generated once with a fixed
seed. torch runs on 1 intra-op thread by default (``--threads``): these machines share cores, and one thread keeps
other processes' load from multiplying the noise.

    python benchmarks/mask_overhead.py            # `make bench`, about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections import defaultdict

import lightning as L
import torch
from _timing import StepTimer, make_batches, timed_trainer
from lightning.pytorch.callbacks import ModelPruning
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader

from lt_lightning import MaskingCallback
from lt_lightning.experiments.configs import quiet_console
from lt_lightning.masks import MaskEnforcer, Masks, select_parameters
from lt_lightning.ticket import Ticket, load_ticket
from lt_lightning.zoo import Classifier

DENSITY = 0.2
VARIANTS = ("dense", "empty_callback", "lt_all_kept", "lt_masks", "pl_pruning", "torch_prune")
MODELS = {
    "lenet_300_100": ("lenet_300_100", {}),
    "conv2": ("conv2", {"in_channels": 1, "image_size": 28}),
}


def make_model(name: str) -> Classifier:
    torch.manual_seed(0)
    model, kwargs = MODELS[name]
    return Classifier(model, kwargs, optimizer="adam", lr=1.2e-3)


def weight_modules(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def make_ticket(name: str, folder: str, density: float = DENSITY) -> str:
    """Random masks at ``density`` on every Linear/Conv weight, saved as a ticket file."""
    model = make_model(name)
    generator = torch.Generator().manual_seed(1)
    params = dict(model.named_parameters())
    masks = Masks({n: torch.rand(params[n].shape, generator=generator) < density for n in select_parameters(model)})
    path = os.path.join(folder, f"{name}_{density}.pt")
    Ticket(masks, model.state_dict(), {}).save(path)
    return path


def fit_once(name: str, variant: str, batches: list, epochs: int, ticket: str, all_kept: str) -> float:
    model = make_model(name)
    timer = StepTimer()
    callbacks: list[L.Callback] = [timer]
    if variant == "empty_callback":
        callbacks.append(L.Callback())
    elif variant == "lt_all_kept":
        callbacks.append(MaskingCallback(ticket=all_kept))
    elif variant == "lt_masks":
        callbacks.append(MaskingCallback(ticket=ticket))
    elif variant == "pl_pruning":
        callbacks.append(ModelPruning("l1_unstructured", amount=1 - DENSITY, parameter_names=["weight"],
                                      apply_pruning=lambda epoch: epoch == 0, verbose=0))
    elif variant == "torch_prune":
        torch_prune.global_unstructured(weight_modules(model), pruning_method=torch_prune.L1Unstructured,
                                        amount=1 - DENSITY)
    timed_trainer(epochs, callbacks).fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    if variant in ("lt_masks", "pl_pruning", "torch_prune"):
        check_density(model, variant)
    return timer.step_ms()


def check_density(model: nn.Module, variant: str) -> None:
    """The pruned variants really trained a network at DENSITY (within 1 point)."""
    weights = [m.weight for m, _ in weight_modules(model)]
    kept = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    if abs(kept - DENSITY) > 0.01:
        raise RuntimeError(f"{variant}: trained network has density {kept:.3f}, expected {DENSITY}.")


def enforcement_ms(name: str, ticket: str, calls: int = 300) -> tuple[float, float]:
    """Median ms of MaskEnforcer.enforce_() alone (MaskingCallback's per-step work without clipping), and of
    mask_grads_() (added when gradients are clipped)."""
    model = make_model(name)
    masks = load_ticket(ticket).masks
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    enforcer = MaskEnforcer(model, masks)
    times: dict[str, list[float]] = {"enforce_": [], "mask_grads_": []}
    for _ in range(calls):
        for method in times:
            start = time.perf_counter()
            getattr(enforcer, method)()
            times[method].append(time.perf_counter() - start)
    return 1e3 * statistics.median(times["enforce_"]), 1e3 * statistics.median(times["mask_grads_"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of every (model, variant)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per fit (after one warm-up epoch)")
    parser.add_argument("--lenet-steps", type=int, default=60, help="steps per epoch for LeNet-300-100")
    parser.add_argument("--conv-steps", type=int, default=6, help="steps per epoch for Conv-2")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()

    started = time.perf_counter()
    quiet_console(args.threads)

    steps = {"lenet_300_100": args.lenet_steps, "conv2": args.conv_steps}
    batches = {m: make_batches(steps[m], args.batch_size) for m in args.models}
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        tickets = {m: make_ticket(m, folder) for m in args.models}
        all_kept = {m: make_ticket(m, folder, density=1.0) for m in args.models}
        jobs: list[tuple[str, str]] = [(m, v) for m in args.models for v in VARIANTS]
        for rep in range(args.reps):
            order.shuffle(jobs)
            for m, v in jobs:
                results[(m, v)].append(fit_once(m, v, batches[m], args.epochs, tickets[m], all_kept[m]))
            print(f"repetition {rep + 1}/{args.reps} done ({time.perf_counter() - started:.0f} s)", flush=True)
        enforcement = {m: enforcement_ms(m, tickets[m]) for m in args.models}

    print(f"\nPer-optimizer-step cost, batch {args.batch_size}, torch threads {torch.get_num_threads()},"
          f" {args.reps} interleaved repetitions; density {DENSITY:.0%} for the pruned variants.")
    print("| model | variant | median ms/step | min-max ms/step | ratio to dense (of medians) |")
    print("|---|---|---:|---:|---:|")
    for m in args.models:
        dense = statistics.median(results[(m, "dense")])
        for v in VARIANTS:
            values = results[(m, v)]
            med = statistics.median(values)
            print(f"| {m} | {v} | {med:.3f} | {min(values):.3f}-{max(values):.3f} | {med / dense:.3f}x |")
    for m in args.models:
        enforce, grads = enforcement[m]
        print(f"{m}: MaskEnforcer.enforce_() alone {enforce:.3f} ms per step (median); mask_grads_(), run only when"
              f" gradients are clipped, {grads:.3f} ms.")
    print("Target: lt_masks at most 1.05x dense on LeNet-300-100 on CPU; ModelPruning's hooks were ~1.44x.")
    print(f"Total wall time: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
