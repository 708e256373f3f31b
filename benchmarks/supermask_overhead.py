"""Per-optimizer-step cost of training a supermask against dense training of the same network, in the same Lightning
loop, and what the exact top-k of every forward costs.

Variants, each a fresh ``Classifier("lenet_300_100", {})`` (Adam 1.2e-3, batch 60) trained by a fresh ``L.Trainer``
(no logger, checkpointing, progress bar or validation):

- ``dense``: no callback, the weights trained;
- ``edge_popup``: ``SupermaskCallback(density=0.5, weight_init="signed_constant")``: weights frozen, scores trained,
  the top half of each layer's ``|scores|`` selected in every forward;
- ``biprop``: the same with ``method="biprop"`` (kept weights ``alpha * sign(w)``);
- ``edge_popup_kthvalue``: ``edge_popup`` with the selection done the obvious way, ``torch.kthvalue`` then a
  comparison (ties not handled), to show what :class:`~lt_lightning.supermask.topk.TopK` saves;
- ``edge_popup_masks_once``: ``edge_popup`` with the masks selected at the first forward and never again (not a
  supermask: the scores train but the subnetwork stays). What it costs over ``dense`` is the rest of a supermask step
  (the masked multiply, the straight-through backward, the parametrization), the floor under any top-k.

Timing as in ``benchmarks/mask_overhead.py``: a warm-up epoch, then ``--epochs`` timed epochs whose steps are the
intervals between consecutive ``on_train_batch_start`` stamps (everything Lightning does for one step); each variant
is fitted ``--reps`` times, interleaved in a shuffled order per repetition; the table gives the median over
repetitions and the ratio of medians to ``dense``, for the whole step and for its forward and backward passes (from
the batch start to ``on_before_optimizer_step``: without the optimizer, which updates as many values in both). Two
clocks: wall time (``perf_counter``) and this process's CPU time (``process_time``, one torch thread), which other
processes on a shared machine disturb less. Then the top-k alone: median ms per call on LeNet-300-100's first layer
(235,200 scores, k = half) along 60 steps of a real supermask training (its scores after each step).

    python benchmarks/supermask_overhead.py                    # about 40 s on 2 CPU cores
    python benchmarks/supermask_overhead.py --batch-size 256
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict

import lightning as L
import torch
from _timing import CLOCKS, StepTimer, make_batches, timed_trainer
from torch.utils.data import DataLoader

import lt_lightning.supermask.layers as supermask_layers
from lt_lightning import SupermaskCallback
from lt_lightning.experiments.configs import quiet_console
from lt_lightning.supermask import SupermaskSpec, TopK
from lt_lightning.zoo import Classifier

VARIANTS = ("dense", "edge_popup", "biprop", "edge_popup_kthvalue", "edge_popup_masks_once")


class KthvalueTopK:
    """The obvious selection: the k-th largest by ``torch.kthvalue``, then one comparison."""

    def masks(self, values: list[torch.Tensor], k: int) -> list[torch.Tensor]:
        (value,) = values
        threshold = torch.kthvalue(value.reshape(-1), value.numel() - k + 1).values
        return [(value >= threshold).float()]


SELECT = supermask_layers._Group.mask


def masks_once(group: supermask_layers._Group, member: supermask_layers.Supermask) -> torch.Tensor:
    """``_Group.mask`` that selects at the first call only."""
    if not group._masks:
        return SELECT(group, member)
    return group._masks[group.members.index(member)]


def fit_once(variant: str, batches: list, epochs: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = Classifier("lenet_300_100", {}, optimizer="adam", lr=1.2e-3)
    timer = StepTimer()
    callbacks: list[L.Callback] = [timer]
    if variant != "dense":
        method = "biprop" if variant == "biprop" else "edge_popup"
        callbacks.append(SupermaskCallback(density=0.5, method=method, weight_init="signed_constant",
                                           save_tickets=False))
    supermask_layers.TopK = KthvalueTopK if variant == "edge_popup_kthvalue" else TopK  # type: ignore[misc]
    supermask_layers._Group.mask = masks_once if variant == "edge_popup_masks_once" else SELECT  # type: ignore
    timed_trainer(epochs, callbacks).fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    supermask_layers.TopK = TopK  # type: ignore[misc]
    supermask_layers._Group.mask = SELECT  # type: ignore[method-assign]
    return {**{f"step {clock}": timer.step_ms(clock) for clock in CLOCKS},
            **{f"fwd+bwd {clock}": timer.forward_backward_ms(clock) for clock in CLOCKS}}


def selection_ms(batches: list, steps: int = 60) -> dict[str, float]:
    """Median ms per selection of the top half of the first layer's 235,200 |scores|, along the steps of a real
    supermask training (Adam 1.2e-3 on ``batches``, plain PyTorch loop, after as many steps of warm-up)."""
    torch.manual_seed(0)
    model = Classifier("lenet_300_100", {}).model
    SupermaskSpec(density=0.5, weight_init="signed_constant").apply(model)
    scores = supermask_layers.supermask_layers(model)["hidden.0.weight"].scores
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1.2e-3)
    trajectory = []
    for step in range(2 * steps):
        x, y = batches[step % len(batches)]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        if step >= steps:
            trajectory.append(scores.detach().abs().reshape(-1).clone())
    k = trajectory[0].numel() // 2
    top = TopK()
    ways = {
        "torch.sort": lambda a: torch.sort(a).indices[-k:],
        "torch.topk": lambda a: torch.topk(a, k, sorted=False).indices,
        "torch.kthvalue": lambda a: a >= torch.kthvalue(a, a.numel() - k + 1).values,
        "TopK": lambda a: top.masks([a], k),
    }
    times: dict[str, list[float]] = defaultdict(list)
    for magnitudes in trajectory:
        for name, way in ways.items():
            start = time.process_time()
            way(magnitudes)
            times[name].append(time.process_time() - start)
    return {name: 1e3 * statistics.median(values[5:]) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every variant")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per fit (after one warm-up epoch)")
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    started = time.perf_counter()
    quiet_console(args.threads)

    batches = make_batches(args.steps, args.batch_size)
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    order, jobs = random.Random(0), list(VARIANTS)
    for rep in range(args.reps):
        order.shuffle(jobs)
        for variant in jobs:
            for measure, value in fit_once(variant, batches, args.epochs).items():
                results[(variant, measure)].append(value)
        print(f"repetition {rep + 1}/{args.reps} done ({time.perf_counter() - started:.0f} s)", flush=True)
    selection = selection_ms(batches)

    print(f"\nLeNet-300-100, per-optimizer-step cost, batch {args.batch_size}, torch threads {torch.get_num_threads()},"
          f" {args.reps} interleaved repetitions; supermask density 0.5.")
    measures = ("step wall", "step cpu", "fwd+bwd wall", "fwd+bwd cpu")
    print("| variant | " + " | ".join(f"{m} ms (ratio)" for m in measures) + " |")
    print("|---|" + "---:|" * len(measures))
    dense = {m: statistics.median(results[("dense", m)]) for m in measures}
    for variant in VARIANTS:
        medians = {m: statistics.median(results[(variant, m)]) for m in measures}
        print(f"| {variant} | " + " | ".join(f"{medians[m]:.3f} ({medians[m] / dense[m]:.2f}x)" for m in measures)
              + " |")
    print("\nTop half of the first layer's 235,200 |scores| along 60 steps of supermask training, median CPU ms per"
          " call:")
    print(" | ".join(f"{name} {ms:.2f}" for name, ms in selection.items()))
    print("Target: edge_popup at most 1.3x dense.")
    print(f"Total wall time: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
