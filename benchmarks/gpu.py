"""GPU figures in one script: on a CUDA device, what masks, supermasks, RigL and IMP cost against dense training,
and the global threshold at 100M and 1B scores. Without CUDA it says so and exits 0 (``--cpu`` runs the same code on
the CPU at tiny sizes, a smoke test whose numbers mean nothing).

1. **Per-step cost of masks**: ResNet-20 (the zoo's, CIFAR) and ResNet-18 (torchvision's, 10 classes), fp32 and
   bf16-mixed: ``dense`` against ``masks`` (``MaskingCallback`` with random masks at 20% on every Conv/Linear
   weight), ``supermask`` (``SupermaskCallback``, edge-popup at 50%) and ``rigl`` (``RigLCallback`` at 20%, ERK,
   updates every ``--rigl-every`` steps; mean of the steps without an update and of the update steps).
2. **A whole IMP run against its plain fits**: ``IMPCallback(rounds=R)`` in one fit against ``R + 1`` plain fits of
   the same length, ResNet-20 fp32.
3. **Global threshold** (``keep_top_k``, the IMP/RigL global allocation's selection) against ``cat`` +
   ``kthvalue``, at 1e8 and 1e9 scores in ~100 tensors (``benchmarks/threshold.py``'s transformer shapes) on the
   device, with the peak extra device memory (``torch.cuda.max_memory_allocated``).

Timing (``benchmarks/_timing.py``'s ``StepTimer``): a step runs from one training batch start to the next, after a
``torch.cuda.synchronize()`` so that queued kernels are counted in their own step; one warm-up epoch, then
``--epochs`` timed ones; every (model, precision, variant) is fitted ``--reps`` times, interleaved in a shuffled
order per repetition; medians and ratios of medians to ``dense``. Inputs: CIFAR-shaped (3x32x32) standard-normal
batches with random labels, built once on the device, batch ``--batch-size``; SGD 0.1 with momentum 0.9.

    python benchmarks/gpu.py                  # a few minutes on one GPU; prints Markdown tables
    python benchmarks/gpu.py --cpu --quick    # smoke test of the code paths on a CPU
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import lightning as L
import torch
from _timing import StepTimer
from threshold import layer_shapes
from torch.utils.data import DataLoader

from lt_lightning import IMPCallback, MaskingCallback, RigLCallback, SupermaskCallback
from lt_lightning.experiments.configs import quiet_console
from lt_lightning.masks import Masks, select_parameters
from lt_lightning.pruning.threshold import keep_top_k
from lt_lightning.ticket import Ticket
from lt_lightning.zoo import Classifier

VARIANTS = ("dense", "masks", "supermask", "rigl")
PRECISIONS = ("32-true", "bf16-mixed")
DENSITY = 0.2


class SyncedStepTimer(StepTimer):
    """``StepTimer`` that waits for the device first, so that each stamp closes the work queued before it."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch[0].is_cuda:
            torch.cuda.synchronize()
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


def make_model(name: str) -> Classifier:
    torch.manual_seed(0)
    module = Classifier("resnet20", {}, optimizer="sgd", lr=0.1, momentum=0.9)
    if name == "resnet18":
        from torchvision.models import resnet18

        module.model = resnet18(num_classes=10)
    return module


def make_batches(steps: int, batch_size: int, device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(batch_size, 3, 32, 32, generator=generator).to(device),
             torch.randint(0, 10, (batch_size,), generator=generator).to(device)) for _ in range(steps)]


def trainer(device: str, precision: str, callbacks: list[L.Callback], **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision,
                     callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, **kwargs)


def random_ticket(name: str, folder: str) -> str:
    module = make_model(name)
    generator = torch.Generator().manual_seed(1)
    params = dict(module.named_parameters())
    masks = Masks({n: torch.rand(params[n].shape, generator=generator) < DENSITY for n in select_parameters(module)})
    path = f"{folder}/{name}.pt"
    Ticket(masks, module.state_dict(), {}).save(path)
    return path


def fit_once(name: str, precision: str, variant: str, batches: list, args: argparse.Namespace, ticket: str
             ) -> tuple[float, float | None]:
    """Mean ms of a step (for RigL: of the steps without an update, and of the update steps)."""
    module = make_model(name)
    timer = SyncedStepTimer()
    callbacks: list[L.Callback] = [timer]
    rigl = None
    if variant == "masks":
        callbacks.append(MaskingCallback(ticket=ticket))
    elif variant == "supermask":
        callbacks.append(SupermaskCallback(density=0.5, method="edge_popup", save_tickets=False))
    elif variant == "rigl":
        rigl = RigLCallback(density=DENSITY, distribution="erk", allow_dense_layers=True, update_every=args.rigl_every,
                            stop=0.95, save_ticket=False)
        callbacks.append(rigl)
    trainer(args.device, precision, callbacks, max_epochs=1 + args.epochs).fit(
        module, train_dataloaders=DataLoader(batches, batch_size=None))
    if rigl is None:
        return timer.step_ms(), None
    if not rigl.updates:
        raise RuntimeError("rigl: no mask update in the timed epochs; lower --rigl-every.")
    steps = timer.steps()
    return (statistics.fmean(ms for step, ms in steps if not rigl.is_update_step(step)),
            statistics.fmean(ms for step, ms in steps if rigl.is_update_step(step)))


def step_costs(args: argparse.Namespace) -> None:
    batches = make_batches(args.steps, args.batch_size, args.device)
    results: dict[tuple[str, str, str], list[tuple[float, float | None]]] = defaultdict(list)
    jobs = [(m, p, v) for m in args.models for p in args.precisions for v in VARIANTS]
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as folder:
        tickets = {m: random_ticket(m, folder) for m in args.models}
        for rep in range(args.reps):
            order.shuffle(jobs)
            for m, p, v in jobs:
                results[(m, p, v)].append(fit_once(m, p, v, batches, args, tickets[m]))
            print(f"step costs: repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    print(f"\n### Per-step cost against dense ({device_name(args.device)}, batch {args.batch_size}, {args.reps}"
          f" interleaved repetitions of {args.epochs} x {args.steps} timed steps)\n")
    print("| model | precision | variant | median ms/step | ratio to dense | RigL update step ms (ratio) |")
    print("|---|---|---|---:|---:|---:|")
    for m in args.models:
        for p in args.precisions:
            dense = statistics.median(r[0] for r in results[(m, p, "dense")])
            for v in VARIANTS:
                med = statistics.median(r[0] for r in results[(m, p, v)])
                update = ""
                if v == "rigl":
                    up = statistics.median(r[1] for r in results[(m, p, v)])
                    update = f"{up:.2f} ({up / dense:.2f}x)"
                print(f"| {m} | {p} | {v} | {med:.2f} | {med / dense:.3f}x | {update} |")


def imp_cost(args: argparse.Namespace) -> None:
    batches = make_batches(args.steps, args.batch_size, args.device)
    times: dict[str, list[float]] = defaultdict(list)

    def imp(folder: str) -> None:
        callback = IMPCallback(rounds=args.imp_rounds, pruning_fraction=0.2, dirpath=folder)
        trainer(args.device, "32-true", [callback], max_steps=args.steps).fit(
            make_model("resnet20"), train_dataloaders=DataLoader(batches, batch_size=None))
        assert len(callback.history) == args.imp_rounds + 1

    def plain(folder: str) -> None:
        for _ in range(args.imp_rounds + 1):
            trainer(args.device, "32-true", [], max_steps=args.steps).fit(
                make_model("resnet20"), train_dataloaders=DataLoader(batches, batch_size=None))

    for rep in range(args.reps):
        for name, run in (("imp", imp), ("plain fits", plain))[:: 1 if rep % 2 == 0 else -1]:
            with tempfile.TemporaryDirectory() as folder:
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                run(folder)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
    imp_s, plain_s = statistics.median(times["imp"]), statistics.median(times["plain fits"])
    print(f"\n### A whole IMP run against its plain fits (ResNet-20 fp32, {args.imp_rounds} rounds of {args.steps}"
          f" steps, batch {args.batch_size}, median of {args.reps})\n")
    print(f"IMP {imp_s:.1f} s, {args.imp_rounds + 1} plain fits {plain_s:.1f} s: {imp_s / plain_s:.3f}x")


def naive_threshold(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    flat = torch.cat([s.reshape(-1) for s in scores])
    value = torch.kthvalue(flat, flat.numel() - k + 1).values
    del flat
    return [s >= value for s in scores]


def threshold_cost(args: argparse.Namespace) -> None:
    print(f"\n### Global threshold on {device_name(args.device)}: keep half of the scores (median of {args.reps})\n")
    print("| scores | tensors | method | ms | peak extra device MB |")
    print("|---:|---:|---|---:|---:|")
    for total in map(int, args.sizes):
        generator = torch.Generator(device=args.device).manual_seed(0)
        scores = [torch.rand(shape, generator=generator, device=args.device) for shape in layer_shapes(total)]
        k = total // 2
        for name, method in (("keep_top_k", keep_top_k), ("cat+kthvalue", naive_threshold)):
            times, peak = [], 0
            for _ in range(args.reps):
                try:
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                    start = time.perf_counter()
                    kept = method(scores, k)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                        peak = torch.cuda.max_memory_allocated() - base
                    times.append(time.perf_counter() - start)
                    del kept
                except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
                    print(f"| {total:.0e} | {len(scores)} | {name} | failed: {str(err).splitlines()[0][:80]} | |")
                    break
            if times:
                print(f"| {total:.0e} | {len(scores)} | {name} | {1e3 * statistics.median(times):.1f} |"
                      f" {peak / 2**20:.0f} |")
        del scores
        if args.device == "cuda":
            torch.cuda.empty_cache()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else "CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a smoke test) instead of CUDA")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code paths, numbers meaningless")
    parser.add_argument("--parts", nargs="+", default=["steps", "imp", "threshold"],
                        choices=["steps", "imp", "threshold"])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet18"], choices=["resnet20", "resnet18"])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per fit, after one warm-up epoch")
    parser.add_argument("--steps", type=int, default=50, help="steps an epoch (and per IMP round)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rigl-every", type=int, default=25)
    parser.add_argument("--imp-rounds", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e8, 1e9], help="numbers of threshold scores")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False); nothing measured. Run it"
              " on a machine with a GPU, or with --cpu --quick to check the code paths.")
        return 0
    args.device = "cpu" if args.cpu else "cuda"
    if args.quick:
        args.reps, args.epochs, args.steps, args.batch_size, args.rigl_every = 1, 1, 4, 8, 2
        args.imp_rounds, args.sizes = 1, [1e5]
    quiet_console(1 if args.cpu else torch.get_num_threads())
    started = time.perf_counter()
    print(f"torch {torch.__version__}, lightning {L.__version__}, {device_name(args.device)}")
    for part, run in (("steps", step_costs), ("imp", imp_cost), ("threshold", threshold_cost)):
        if part in args.parts:
            run(args)
    print(f"\nTotal wall time: {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
