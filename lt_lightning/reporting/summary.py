"""One row per IMP round: a run's history read back from disk, as table rows and as Markdown.

Pure Python: shared by the W&B table, the plots and ``lt-lightning report``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lt_lightning.records import HISTORY_FILE, load_history

__all__ = ["HISTORY_FILE", "accuracy_metric", "load_history", "markdown_report", "markdown_table", "metric_names",
           "round_table"]


def metric_names(history: Sequence[dict[str, Any]]) -> list[str]:
    """Every metric with a final value in some round, sorted."""
    return sorted({k for record in history for k in record["final"]})


def accuracy_metric(history: Sequence[dict[str, Any]], metric: str | None = None) -> str:
    """The metric shown against weights remaining: ``metric`` if given; else the monitored metric if its name has
    "acc" in it, else the first such name starting with "val", else the first such name, else the monitored metric.

    >>> accuracy_metric([{"monitor": "val_loss", "final": {"train_acc": 0.9, "val_acc": 0.8, "val_loss": 0.3}}])
    'val_acc'
    """
    names = metric_names(history)
    if metric is not None:
        if metric not in names:
            raise ValueError(f"metric {metric!r} is not in the run's history; its metrics are {names}.")
        return metric
    monitor = history[0].get("monitor")
    accuracies = [n for n in names if "acc" in n.lower()]
    preferred = [monitor] if monitor in accuracies else []
    preferred += [n for n in accuracies if n.startswith("val")] + accuracies + ([monitor] if monitor in names else [])
    if not preferred:
        raise ValueError(f"no accuracy-like metric (name containing 'acc') in the run's history; its metrics are"
                         f" {names}: name one.")
    return preferred[0]


def round_table(history: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and one row per round; metrics missing from a round are ``None``.

    >>> columns, rows = round_table([{"round": 1, "density": 0.5, "final": {"acc": 0.9}, "best": {"acc": 0.95},
    ...                               "best_step": 40, "mask_overlap": 0.5}])
    >>> dict(zip(columns, rows[0]))  # doctest: +NORMALIZE_WHITESPACE
    {'round': 1, 'density': 0.5, 'weights_remaining_pct': 50.0, 'final/acc': 0.9, 'best/acc': 0.95,
     'best_step': 40, 'mask_overlap': 0.5, 'distance_from_rewind': None, 'wall_time_s': None}
    """
    final = metric_names(history)
    best = sorted({k for record in history for k in record["best"]})
    basin = sorted({k for record in history for k in (record.get("basin") or {})})
    extra = ["best_step", "mask_overlap", "distance_from_rewind", "wall_time_s"]
    columns = ["round", "density", "weights_remaining_pct", *(f"final/{m}" for m in final),
               *(f"best/{m}" for m in best), *extra, *(f"basin/{m}" for m in basin)]
    rows = [
        [r["round"], r["density"], 100.0 * r["density"], *(r["final"].get(m) for m in final),
         *(r["best"].get(m) for m in best), *(r.get(k) for k in extra),
         *((r.get("basin") or {}).get(m) for m in basin)]
        for r in history
    ]
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(history: Sequence[dict[str, Any]]) -> str:
    """:func:`round_table` as a Markdown table, floats to 4 significant digits, missing values as ``n/a``.

    >>> print(markdown_table([{"round": 0, "density": 1.0, "final": {"acc": 0.91234}, "best": {}}]))
    | round | density | weights_remaining_pct | final/acc | best_step | mask_overlap | distance_from_rewind | wall_time_s |
    |---:|---:|---:|---:|---:|---:|---:|---:|
    | 0 | 1 | 100 | 0.9123 | n/a | n/a | n/a | n/a |
    """
    columns, rows = round_table(history)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(history: Sequence[dict[str, Any]], title: str, metric: str | None = None,
                    images: Sequence[str] = ()) -> str:
    """A Markdown page: headline numbers for the accuracy metric, the round table, then ``images`` (relative paths)."""
    metric = accuracy_metric(history, metric)
    dense, last = history[0], history[-1]
    lines = [f"# {title}", "",
             f"- rounds: {len(history)} (dense round 0, then {len(history) - 1} pruned),"
             f" density {_cell(last['density'])} at the end"
             f" ({100 * last['density']:.3g}% of prunable weights remaining)",
             f"- final {metric}: dense {_cell(dense['final'].get(metric))},"
             f" last round {_cell(last['final'].get(metric))}"]
    lines += ["", markdown_table(history), ""]
    lines += [f"![{os.path.splitext(os.path.basename(image))[0]}]({image})" for image in images]
    return "\n".join(lines) + "\n"
