"""What the step-timing benchmarks share: their batches, a callback stamping every training step of the timed epochs,
and a Trainer that fits with nothing else (no logger, checkpointing, progress bar or validation)."""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import lightning as L
import torch

#: Wall time, and this process's CPU time (one torch thread), which other processes on a shared machine disturb less.
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def make_batches(steps: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` random MNIST-shaped batches (seeded), one epoch of a ``DataLoader(batches, batch_size=None)``."""
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(batch_size, 1, 28, 28, generator=generator),
             torch.randint(0, 10, (batch_size,), generator=generator)) for _ in range(steps)]


class StepTimer(L.Callback):
    """Stamps, in the timed epochs (epoch >= 1) and on both clocks, the start of every training batch with its global
    step, and the moment its backward pass is done (``on_before_optimizer_step``)."""

    def __init__(self) -> None:
        self.starts: dict[str, dict[int, list[tuple[float, int]]]] = {c: defaultdict(list) for c in CLOCKS}
        self.backward_done: dict[str, list[float]] = defaultdict(list)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch >= 1:
            for clock, read in CLOCKS.items():
                self.starts[clock][trainer.current_epoch].append((read(), trainer.global_step))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.current_epoch >= 1:
            for clock, read in CLOCKS.items():
                self.backward_done[clock].append(read() - self.starts[clock][trainer.current_epoch][-1][0])

    def steps(self, clock: str = "wall") -> list[tuple[int, float]]:
        """``(global step reached, ms)`` of every step, from one batch start to the next: everything Lightning does
        for one optimizer step."""
        return [(step + 1, 1e3 * (end - start)) for stamps in self.starts[clock].values()
                for (start, step), (end, _) in zip(stamps, stamps[1:])]

    def step_ms(self, clock: str = "wall") -> float:
        """Mean ms of a whole optimizer step."""
        return statistics.fmean(ms for _, ms in self.steps(clock))

    def forward_backward_ms(self, clock: str = "wall") -> float:
        """Mean ms from a batch start to the end of its backward pass."""
        return 1e3 * statistics.fmean(self.backward_done[clock])


def timed_trainer(epochs: int, callbacks: list[L.Callback]) -> L.Trainer:
    """A CPU Trainer for one warm-up epoch and ``epochs`` timed ones, with nothing but ``callbacks``."""
    return L.Trainer(accelerator="cpu", devices=1, max_epochs=1 + epochs, callbacks=callbacks, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, num_sanity_val_steps=0)
