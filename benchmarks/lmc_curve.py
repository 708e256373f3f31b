"""Time and memory of one linear-mode-connectivity curve in Lightning: 30 points of LeNet-300-100 on 10,000
validation images, each point one ``trainer.validate`` of the module's own ``validation_step``.

The two states are two independent initializations (the cost does not depend on the weights); the validation set is
10,000 MNIST-shaped standard-normal images with random labels, in memory, batch 60 (Frankle & Carbin's), CPU, no
logger or progress bar. Targets (issue 9): the 30 points in at most 60 s on 2 CPU cores, and at most one extra copy
of the weights in memory.

Memory: a second curve is evaluated with an ``evaluate`` that, before each point's validation, adds up the bytes of
every tensor storage alive (found through the garbage collector, one count per storage) that was not alive before
the curve started (the module, the two states and the data are). That is what the curve itself holds on top of its
inputs, in copies of the weights; storages are counted once, so views and shared tensors do not inflate it.

    python benchmarks/lmc_curve.py    # about a minute on 2 cores (the memory pass scans all objects at each point)
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lt_lightning.analysis import error_barrier, interpolate
from lt_lightning.experiments.lmc import validation_evaluator
from lt_lightning.zoo import Classifier

MB = 2**20


class RandomImages(L.LightningDataModule):
    """``size`` MNIST-shaped validation images (standard normal) with random labels."""

    def __init__(self, size: int, batch_size: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.data = TensorDataset(torch.randn(size, 1, 28, 28, generator=generator),
                                  torch.randint(0, 10, (size,), generator=generator))
        self.batch_size = batch_size

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size)


def lenet(seed: int) -> Classifier:
    torch.manual_seed(seed)
    return Classifier("lenet_300_100", {})


def storages() -> dict[int, int]:
    """Every tensor storage alive that the garbage collector can see: data pointer -> bytes."""
    seen = {}
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor) and obj.device.type == "cpu" and not obj.is_meta:
            storage = obj.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=30)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    module = lenet(0)
    state_a = {k: v.clone() for k, v in module.state_dict().items()}
    state_b = {k: v.clone() for k, v in lenet(1).state_dict().items()}
    weights = sum(v.numel() * v.element_size() for v in state_a.values())
    data = RandomImages(args.images, args.batch_size)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    evaluate = validation_evaluator(trainer, module, data)
    evaluate(module)  # warm-up: first-call costs (imports, allocator) are not the curve's

    start = time.perf_counter()
    one = evaluate(module)
    per_validation = time.perf_counter() - start
    start = time.perf_counter()
    curve = interpolate(module, state_a, state_b, evaluate, points=args.points)
    elapsed = time.perf_counter() - start

    gc.collect()
    before = storages()
    extra: list[int] = []

    def measured(net: torch.nn.Module) -> dict[str, float]:
        gc.collect()
        extra.append(sum(n for ptr, n in storages().items() if ptr not in before))
        return evaluate(net)

    interpolate(module, state_a, state_b, measured, points=args.points)

    print(f"LeNet-300-100 ({weights / MB:.2f} MB of weights and buffers), {args.images} validation images, batch"
          f" {args.batch_size}, {torch.get_num_threads()} thread(s)")
    print(f"one validation: {per_validation:.3f} s ({len(one)} metrics: {', '.join(sorted(one))})")
    print(f"{args.points}-point curve: {elapsed:.2f} s ({elapsed / args.points:.3f} s a point; target <= 60 s)")
    print(f"val_err barrier between the two initializations: {error_barrier(curve):.4f}")
    print(f"extra tensor memory while the curve runs: max {max(extra) / MB:.2f} MB = {max(extra) / weights:.2f}"
          f" copies of the weights (min {min(extra) / MB:.2f} MB over {len(extra)} points; target <= 1 copy)")


if __name__ == "__main__":
    main()
