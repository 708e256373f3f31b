"""PNG figures of an IMP run from its history, without W&B.

Figures are drawn on :class:`matplotlib.figure.Figure` objects and saved with the Agg renderer: no pyplot, so the
caller's matplotlib backend and global state are left alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from lt_lightning.reporting.aggregate import Aggregate
from lt_lightning.reporting.summary import accuracy_metric

_DPI = 120
_MAX_TICKS = 12
#: Past this many prunable layers the layer-density figure is a heat map: lines and a legend stop being readable.
MAX_LAYER_LINES = 20
_ROW_INCHES = 0.14  # a heat map row: room for a 7-point layer name


def _figure(height: float = 4.2) -> Figure:
    return Figure(figsize=(7, height), layout="constrained")


def _round_axis(ax: Any, rounds: Sequence[int]) -> None:
    step = max(1, math.ceil(len(rounds) / _MAX_TICKS))
    ax.set_xticks(list(rounds)[::step])
    ax.set_xlabel("round")
    ax.grid(alpha=0.3)


def plot_accuracy(history: Sequence[dict[str, Any]], metric: str | None = None) -> Figure:
    """Final and best ``metric`` per round against % of weights remaining (log scale, from 100% down)."""
    metric = accuracy_metric(history, metric)
    rows = [r for r in history if metric in r["final"]]
    remaining = [100.0 * r["density"] for r in rows]
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(remaining, [r["final"][metric] for r in rows], "o-", label=f"final {metric}")
    best = [(100.0 * r["density"], r["best"][metric]) for r in rows if metric in r["best"]]
    if best:
        ax.plot(*zip(*best), "s--", alpha=0.8, label=f"best {metric} (early-stopping step)")
    ax.axhline(rows[0]["final"][metric], color="grey", linestyle=":", label=f"round {rows[0]['round']} (dense)")
    _remaining_axis(ax, remaining)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs. weights remaining")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _remaining_axis(ax: Any, remaining: Sequence[float]) -> None:
    """% of weights remaining on a log axis from 100% down, one tick per density, in plain percent."""
    ax.set_xscale("log")
    ax.set_xlim(max(remaining) * 1.15, min(remaining) / 1.15)  # reversed: training goes from dense to sparse
    # One tick per round's density (thinned when crowded), labelled in plain percent rather than powers of ten.
    ticks = list(remaining)[:: max(1, math.ceil(len(remaining) / _MAX_TICKS))]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.3g}" for t in ticks])
    ax.set_xlabel("prunable weights remaining (%, log scale)")


def plot_verdicts(result: Aggregate) -> Figure:
    """The final metric against % of weights remaining: the ticket and each control, means over runs with their
    confidence bands, dense as a line with its band, the matching margin below (or above) dense dashed, and the
    densities where the ticket is matching shaded."""
    rows = result.rows
    fig = _figure(height=4.8)
    ax = fig.add_subplot()
    dense = rows[0]
    ax.axhline(dense["dense_mean"], color="grey", linestyle=":", label="dense (round 0)")
    if dense["dense_ci_low"] is not None:
        ax.axhspan(dense["dense_ci_low"], dense["dense_ci_high"], color="grey", alpha=0.12)
    margin = dense["dense_mean"] - (result.eps if result.higher_is_better else -result.eps)
    ax.axhline(margin, color="grey", linestyle="--", linewidth=1, label=f"matching margin ({result.eps:g})")
    curves = [("ticket", [(r, r["ticket_mean"], r["ticket_ci_low"], r["ticket_ci_high"]) for r in rows])]
    curves += [(name, [(r, c["mean"], c["ci_low"], c["ci_high"]) for r in rows if (c := r["controls"].get(name))])
               for name in result.controls]
    for name, points in curves:
        x = [100.0 * r["density"] for r, *_ in points]
        line, = ax.plot(x, [m for _, m, _, _ in points], "o-" if name == "ticket" else "s--", markersize=4,
                        label=name, linewidth=2 if name == "ticket" else 1.2)
        bands = [(xi, lo, hi) for xi, (_, _, lo, hi) in zip(x, points) if lo is not None]
        if bands:
            xs, lows, highs = zip(*bands)
            ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.18, linewidth=0)
    # Shade each matching density out to the geometric midpoints with its neighbours (the axis is logarithmic).
    for i, row in enumerate(rows):
        if row["matching"]:
            here = 100.0 * row["density"]
            left = math.sqrt(here * 100.0 * rows[i - 1]["density"]) if i > 0 else here * 1.15
            right = math.sqrt(here * 100.0 * rows[i + 1]["density"]) if i + 1 < len(rows) else here / 1.15
            ax.axvspan(right, left, color="gold", alpha=0.15, linewidth=0,
                       label="ticket matching" if not any(r["matching"] for r in rows[:i]) else None)
    _remaining_axis(ax, [100.0 * r["density"] for r in rows])
    ax.set_ylabel(f"final {result.metric}")
    n = len(result.runs)
    ax.set_title(f"ticket vs. controls: mean over {n} run{'s' if n > 1 else ''}"
                 + (f", {100 * result.confidence:.3g}% intervals" if n > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def write_verdict_plot(result: Aggregate, out_dir: str) -> str:
    """Save :func:`plot_verdicts` as ``ticket_vs_controls.png`` in ``out_dir``; return its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "ticket_vs_controls.png")
    plot_verdicts(result).savefig(path, dpi=_DPI)
    return path


def plot_layer_density(history: Sequence[dict[str, Any]]) -> Figure:
    """Density of each prunable layer, and of all of them together, per round (log scale): a line per layer, or past
    :data:`MAX_LAYER_LINES` layers (a ViT's 50) a heat map, one row per layer."""
    rounds = [r["round"] for r in history]
    layers = list(history[0].get("layer_density", {}))
    if len(layers) > MAX_LAYER_LINES:
        return _layer_density_heat_map(history, rounds, layers)
    fig = _figure()
    ax = fig.add_subplot()
    for layer in layers:
        ax.plot(rounds, [r["layer_density"].get(layer, math.nan) for r in history], "o-", markersize=3, label=layer)
    ax.plot(rounds, [r["density"] for r in history], "k--", linewidth=2, label="all prunable weights")
    ax.set_yscale("log")
    ax.set_ylabel("density (fraction of weights kept, log scale)")
    ax.set_title("Density per layer")
    _round_axis(ax, rounds)
    fig.legend(loc="outside right upper", fontsize="small")
    return fig


def _layer_density_heat_map(history: Sequence[dict[str, Any]], rounds: Sequence[int], layers: Sequence[str]
                            ) -> Figure:
    """Layers x rounds, density as a logarithmic colour; the first row is all prunable weights together."""
    rows = ["all prunable weights", *layers]
    values = [[r["density"] for r in history]]
    values += [[r["layer_density"].get(layer, math.nan) for r in history] for layer in layers]
    kept = [v for row in values for v in row if v > 0]  # a collapsed layer (density 0) has no place on a log scale
    fig = Figure(figsize=(7, 1.6 + _ROW_INCHES * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, aspect="auto", interpolation="nearest", norm=LogNorm(min(kept, default=1.0), 1.0),
                      cmap=colormaps["viridis"].with_extremes(bad="lightgrey"))
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.axhline(0.5, color="white", linewidth=2)
    step = max(1, math.ceil(len(rounds) / _MAX_TICKS))
    ax.set_xticks(range(0, len(rounds), step), [str(r) for r in rounds[::step]])
    ax.set_xlabel("round")
    ax.set_title(f"Density per layer ({len(layers)} layers; grey: no weight kept or no value)")
    bar = fig.colorbar(image, ax=ax, label="density (fraction of weights kept, log scale)")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
    bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:.2g}"))
    return fig


def plot_mask_overlap(history: Sequence[dict[str, Any]]) -> Figure:
    """Mask overlap with the previous round (IoU of kept weights), and distance of the trained weights from the
    rewind point, per round."""
    rounds = [r["round"] for r in history]
    fig = _figure(height=5.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    pairs = [(r["round"], r["mask_overlap"], r["density"] / p["density"])
             for p, r in zip(history, history[1:]) if r.get("mask_overlap") is not None]
    if pairs:
        x, overlap, nested = zip(*pairs)
        # Drawn first and wide: IMP's nested masks lie exactly on it, and the marks must stay visible on top.
        top.plot(x, nested, "-", color="grey", linewidth=5, alpha=0.35, label="nested masks: density ratio")
        top.plot(x, overlap, "o-", label="mask overlap (IoU)")
        top.legend(fontsize="small")
    top.set_ylim(0, 1.02)
    top.set_ylabel("IoU with previous round")
    top.set_title("Mask overlap between consecutive rounds")
    top.grid(alpha=0.3)
    distance = [(r["round"], r["distance_from_rewind"]) for r in history if r.get("distance_from_rewind") is not None]
    if distance:
        bottom.plot(*zip(*distance), "o-", color="tab:orange")
    bottom.set_ylabel("‖w − w_rewind‖ / ‖w_rewind‖")
    bottom.set_title("Distance of the trained weights from the rewind point")
    _round_axis(bottom, rounds)
    return fig


def write_plots(history: Sequence[dict[str, Any]], out_dir: str, metric: str | None = None) -> list[str]:
    """Save the three figures as PNGs in ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    figures = {
        "accuracy_vs_weights_remaining.png": plot_accuracy(history, metric),
        "layer_density.png": plot_layer_density(history),
        "mask_overlap.png": plot_mask_overlap(history),
    }
    paths = []
    for name, fig in figures.items():
        paths.append(os.path.join(out_dir, name))
        fig.savefig(paths[-1], dpi=_DPI)
    return paths
