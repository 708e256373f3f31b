"""PNG figures of linear mode connectivity analyses (:mod:`lt_lightning.experiments.lmc`): the error along the
linear path between two trainings, and the rewind-point search (instability and error against the rewind step,
the figure of Frankle et al. 2020).

Drawn on :class:`matplotlib.figure.Figure` objects, as :mod:`lt_lightning.reporting.plots`: no pyplot, so the caller's
backend and global state are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

DPI = 120


def plot_error_vs_alpha(results: Sequence[Mapping[str, Any]], labels: Sequence[str] | None = None) -> Figure:
    """The error (each result's ``key``) at each point of the path from copy A (``alpha = 0``) to copy B
    (``alpha = 1``), one line per analysis, labelled with its barrier; the mean of each line's endpoints dotted.

    ``results`` are dicts of :func:`lt_lightning.experiments.lmc.instability` (``curve``, ``key``, ``barrier``,
    ``step``); ``labels`` default to ``step k``.
    """
    if not results:
        raise ValueError("no analysis to plot: results is empty.")
    labels = list(labels) if labels is not None else [f"step {r['step']}" for r in results]
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for result, label in zip(results, labels):
        key = result["key"]
        alphas = [p["alpha"] for p in result["curve"]]
        values = [p[key] for p in result["curve"]]
        line, = ax.plot(alphas, values, "o-", markersize=3, label=f"{label}: barrier {result['barrier']:.3g}")
        ax.plot([0, 1], [(values[0] + values[-1]) / 2] * 2, ":", color=line.get_color(), linewidth=1)
    keys = sorted({r["key"] for r in results})
    ax.set_xlabel("alpha (0: copy A, 1: copy B)")
    ax.set_ylabel(", ".join(keys))
    ax.set_title(f"{', '.join(keys)} along the linear path between two trainings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_rewind_search(search: Mapping[str, Any]) -> Figure:
    """Two panels against the rewind step (the result of :func:`lt_lightning.experiments.lmc.rewind_search`):
    the error of the dense copies (mean of the two) and, with IMP runs, of the tickets (with their dense round 0);
    below, the instability (error barrier) with the stability threshold dashed and stable steps marked."""
    rows = list(search["rows"])
    if not rows:
        raise ValueError("the search has no rows to plot.")
    key, steps = search["key"], [r["step"] for r in rows]
    fig = Figure(figsize=(7, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(steps, [sum(r["copy_errors"]) / len(r["copy_errors"]) for r in rows], "o-",
             label="dense, trained from k (mean of 2 copies)")
    if any("ticket_error" in r for r in rows):
        tickets = [r for r in rows if "ticket_error" in r]
        top.plot([r["step"] for r in tickets], [r["ticket_error"] for r in tickets], "s-",
                 label="IMP ticket" + (f" near density {search['density']:g}" if search.get("density") else ""))
        top.plot([r["step"] for r in tickets], [r["dense_error"] for r in tickets], "--", color="grey",
                 label="IMP run's dense round 0")
        matching = [r for r in tickets if r["matches"]]
        if matching:
            top.plot([r["step"] for r in matching], [r["ticket_error"] for r in matching], "*", markersize=12,
                     color="gold", label="matching")
    top.set_ylabel(key)
    top.set_title(f"{key} and instability vs. rewind step")
    top.grid(alpha=0.3)
    top.legend(fontsize="small")
    bottom.plot(steps, [r["barrier"] for r in rows], "o-", color="tab:red", label="error barrier (instability)")
    bottom.axhline(search["threshold"], color="grey", linestyle="--", label=f"stable below {search['threshold']:g}")
    stable = [r for r in rows if r["stable"]]
    if stable:
        bottom.plot([r["step"] for r in stable], [r["barrier"] for r in stable], "o", color="tab:green",
                    markersize=8, label="stable")
    bottom.set_ylabel(f"{key} barrier")
    bottom.set_xlabel("rewind step k (optimizer steps)")
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize="small")
    positive = [s for s in steps if s > 0]
    if positive and max(positive) / min(positive) > 50:  # Frankle et al. plot rewind steps on a log axis
        bottom.set_xscale("symlog", linthresh=min(positive))
    if any(math.isnan(r["barrier"]) for r in rows):
        bottom.set_title("steps with a NaN barrier are not drawn", fontsize="small")
    return fig
