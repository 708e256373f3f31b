"""What a user sees while an IMP fit runs: the round and density in the progress bar, a line at each round's end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info


def show_round(trainer: pl.Trainer, round_: int, rounds: int, density: float) -> None:
    """Put ``round: r/R`` and ``density`` into the progress bar (TQDM, Rich, or any bar built on ``get_metrics``).

    Call once per round. Lightning's progress bars show ``trainer.progress_bar_metrics``, a dict that Lightning only
    updates key by key during a fit (it is emptied before sanity checking, so call this from ``on_train_start`` on).
    An entry put there stays shown with no per-step cost, where ``LightningModule.log(..., prog_bar=True)`` would
    cost a call each step and put the values into ``callback_metrics`` (and so into the round records). Strings,
    because the Rich bar prints numbers with 3 decimals.
    """
    # Lightning types the bar metrics as floats; the Rich and TQDM bars print strings as they are.
    bar: dict[str, Any] = trainer.progress_bar_metrics
    bar.update({"round": f"{round_}/{rounds}", "density": f"{density:.3g}"})


def round_summary(record: Mapping[str, Any], rounds: int) -> str:
    """One line about a finished round: density, the monitored metric's final and best values, wall time.

    >>> round_summary({"round": 2, "density": 0.64, "monitor": "val_loss", "final": {"val_loss": 0.31},
    ...                "best": {"val_loss": 0.29}, "best_step": 120, "wall_time_s": 12.34}, rounds=5)
    'lt-lightning: round 2/5 done: density 0.64 (64% of prunable weights remaining), val_loss final 0.31, best 0.29 at step 120, 12.3 s'
    """
    monitor = record["monitor"]
    final, best = record["final"].get(monitor), record["best"].get(monitor)
    if final is None:
        measured = f"{monitor} not logged"
    else:
        measured = f"{monitor} final {final:.4g}"
        if best is not None:
            measured += f", best {best:.4g} at step {record['best_step']}"
    return (f"lt-lightning: round {record['round']}/{rounds} done: density {record['density']:.4g}"
            f" ({100 * record['density']:.3g}% of prunable weights remaining), {measured},"
            f" {record['wall_time_s']:.3g} s")


def print_round_summary(record: Mapping[str, Any], rounds: int) -> None:
    """Log :func:`round_summary` at info level on rank zero."""
    rank_zero_info(round_summary(record, rounds))
