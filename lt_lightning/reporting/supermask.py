"""Supermask runs side by side: the final accuracy of each :class:`~lt_lightning.SupermaskCallback` run against its
density, grouped by method, as a Markdown table and a PNG (``lt-lightning report RUN_DIR...``).

A SupermaskCallback run leaves in its log dir the subnetwork's ticket, ``tickets/supermask.pt``, whose metadata holds
the callback's arguments (method, density, weight_init, binary_activations, ...), and, with a ``CSVLogger``,
``metrics.csv``: every scalar the module logged, one column each. A run's value is the last one logged of the metric
(``val_acc``-like by default). Runs that share a variant (the method, with binary activations, and any other argument
that differs between the given runs, such as ``weight_init``) and a density are seeds of one point: their mean, with
a Student-t interval when there are several.

Reading and tables need no matplotlib; :func:`plot_supermask` imports it when called.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lt_lightning.analysis.verdicts import student_t_quantile
from lt_lightning.layout import TICKETS_DIR
from lt_lightning.records import HISTORY_FILE, default_mode
from lt_lightning.reporting.summary import accuracy_metric

#: Where a SupermaskCallback run's ticket lies in its log dir, and where a CSVLogger writes the logged scalars.
TICKET = os.path.join(TICKETS_DIR, "supermask.pt")
METRICS_FILE = "metrics.csv"
FIGURE = "supermask_accuracy_vs_density.png"
#: Arguments of the callback that name a variant, besides the method, when they differ between the runs reported.
VARIANT_KEYS = ("weight_init", "scale_fan", "allocation", "basis", "progressive_epochs")
_NOT_METRICS = ("epoch", "step")


@dataclass
class SupermaskRun:
    """One run folder: the callback's arguments (the ticket's metadata) and the last logged value of each metric."""

    path: str
    config: dict[str, Any]
    final: dict[str, float]

    @property
    def density(self) -> float:
        return float(self.config["density"])


def is_supermask_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a SupermaskCallback run: its ticket, and no IMP history."""
    path = os.fspath(path)
    return os.path.isfile(os.path.join(path, TICKET)) and not os.path.isfile(os.path.join(path, HISTORY_FILE))


def final_metrics(path: str | os.PathLike) -> dict[str, float]:
    """The last non-empty value of every column of a CSVLogger's ``metrics.csv`` (not ``epoch``, ``step`` or the
    callback's own ``supermask/...`` scalars)."""
    final: dict[str, float] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key and value not in (None, "") and key not in _NOT_METRICS and not key.startswith("supermask/"):
                    final[key] = float(value)
    return final


def read_supermask_run(path: str | os.PathLike) -> SupermaskRun:
    """Read a run folder's ticket metadata and ``metrics.csv``; errors name the folder and what it lacks."""
    from lt_lightning.ticket import load_ticket  # torch, only where tickets are read

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path!r} is not a directory; expected a SupermaskCallback run's log dir.")
    ticket_file, metrics_file = os.path.join(path, TICKET), os.path.join(path, METRICS_FILE)
    if not os.path.isfile(ticket_file):
        raise FileNotFoundError(f"no supermask ticket in {path!r}: expected {ticket_file!r}, written by"
                                " SupermaskCallback at the end of its fit (save_tickets=True, dirpath=None).")
    config = load_ticket(ticket_file).metadata
    if config.get("kind") != "supermask" or "density" not in config or "method" not in config:
        raise ValueError(f"{ticket_file!r} is not a SupermaskCallback ticket: its metadata has no supermask"
                         f" method and density ({sorted(config)}).")
    if not os.path.isfile(metrics_file):
        raise FileNotFoundError(f"no {METRICS_FILE} in {path!r}: the report reads the accuracies a CSVLogger wrote"
                                " there; give the Trainer a CSVLogger (it may sit beside other loggers).")
    return SupermaskRun(path, dict(config), final_metrics(metrics_file))


def read_supermask_runs(paths: Sequence[str | os.PathLike]) -> list[SupermaskRun]:
    """Read every run folder; all must be SupermaskCallback runs (an IMP run's folder is named as such)."""
    imp = [os.fspath(p) for p in paths if os.path.isfile(os.path.join(p, HISTORY_FILE))]
    if imp:
        raise ValueError(f"{imp} hold IMP runs ({HISTORY_FILE}) and the others supermask runs: report them"
                         " separately.")
    return [read_supermask_run(p) for p in paths]


def variant(config: Mapping[str, Any], keys: Sequence[str] = ()) -> str:
    """A run's variant: its method, ``+ binary activations`` when it has them (biprop's MPT-1/1), and ``key=value``
    for each of ``keys``.

    >>> variant({"method": "biprop", "binary_activations": True, "weight_init": "kaiming_normal"}, ["weight_init"])
    'biprop + binary activations, weight_init=kaiming_normal'
    """
    name = str(config["method"]) + (" + binary activations" if config.get("binary_activations") else "")
    return ", ".join([name, *(f"{k}={config.get(k)}" for k in keys)])


def summarize(runs: Sequence[SupermaskRun], metric: str | None = None,
              confidence: float = 0.95) -> tuple[str, list[dict[str, Any]]]:
    """The metric and one row per variant and density (variants in order of first appearance, densities from the
    highest down): ``variant``, ``density``, ``n``, ``mean``, ``ci_low``/``ci_high`` (``None`` with one run),
    ``values`` and ``runs``."""
    if not runs:
        raise ValueError("no supermask runs to report.")
    metric = accuracy_metric([{"final": runs[0].final}], metric)
    missing = [r.path for r in runs if metric not in r.final]
    if missing:
        raise ValueError(f"metric {metric!r} was not logged in {missing} (it is in {runs[0].path!r}).")
    keys = [k for k in VARIANT_KEYS if len({repr(r.config.get(k)) for r in runs}) > 1]
    groups: dict[tuple[str, float], list[SupermaskRun]] = {}
    for run in runs:
        groups.setdefault((variant(run.config, keys), run.density), []).append(run)
    order = list(dict.fromkeys(name for name, _ in groups))
    rows = []
    for (name, density), members in sorted(groups.items(), key=lambda g: (order.index(g[0][0]), -g[0][1])):
        values = [r.final[metric] for r in members]
        mean, low, high = statistics.fmean(values), None, None
        if len(values) > 1:
            half = (student_t_quantile((1 + confidence) / 2, len(values) - 1) * statistics.stdev(values)
                    / math.sqrt(len(values)))
            low, high = mean - half, mean + half
        rows.append({"variant": name, "density": density, "n": len(values), "mean": mean, "ci_low": low,
                     "ci_high": high, "values": values, "runs": [r.path for r in members]})
    return metric, rows


def _shown(metric: str) -> tuple[Any, str]:
    """How values of ``metric`` are printed: accuracies (maximised) in percent, others as they are."""
    if default_mode(metric) == "max":
        return (lambda v: f"{100 * v:.2f}"), " (%)"
    return (lambda v: f"{v:.4g}"), ""


def markdown_supermask(metric: str, rows: Sequence[Mapping[str, Any]], title: str | None = None,
                       images: Sequence[str] = (), confidence: float = 0.95) -> str:
    """The rows of :func:`summarize` as a Markdown page (``#`` title) or section (``##``), then ``images``."""
    show, unit = _shown(metric)
    runs = sum(row["n"] for row in rows)
    lines = [f"# {title}" if title else "## Supermask runs: accuracy against density", "",
             f"- runs: {runs}, in {len(rows)} groups of one variant and density",
             f"- metric: final {metric} (the last value logged in each run's {METRICS_FILE})", "",
             f"| variant | % weights remaining | n | final {metric}{unit} | per run |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        estimate = show(row["mean"])
        if row["ci_low"] is not None:
            estimate += f" [{show(row['ci_low'])}, {show(row['ci_high'])}]"
        lines.append(f"| {row['variant']} | {100 * row['density']:.3g} | {row['n']} | {estimate} |"
                     f" {', '.join(show(v) for v in row['values'])} |")
    if any(row["n"] > 1 for row in rows):
        lines += ["", f"Values are means over the runs of each variant and density [{100 * confidence:.3g}%"
                  " interval, Student t]; the runs are taken as seeds of one configuration."]
    lines += ["", *(f"![{os.path.splitext(os.path.basename(p))[0]}]({p})" for p in images)]
    return "\n".join(lines).rstrip() + "\n"


def plot_supermask(metric: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    """The final metric against % of weights remaining (log scale, from the densest down): one line per variant,
    a point per density at the mean over its runs, with the interval as an error bar where there are several, and
    each run as a grey dot beside it."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    scale = 100.0 if default_mode(metric) == "max" else 1.0
    names = list(dict.fromkeys(row["variant"] for row in rows))
    for i, name in enumerate(names):
        points = [row for row in rows if row["variant"] == name]
        # Variants at one density are set a little apart (3% of the density each, the first leftmost on the reversed
        # axis), so that their bars stay visible.
        x = [100.0 * row["density"] * 1.03 ** ((len(names) - 1) / 2 - i) for row in points]
        y = [scale * row["mean"] for row in points]
        errors = [[scale * (row["mean"] - row["ci_low"]) if row["ci_low"] is not None else 0.0 for row in points],
                  [scale * (row["ci_high"] - row["mean"]) if row["ci_high"] is not None else 0.0 for row in points]]
        ax.errorbar(x, y, yerr=errors, fmt="o-", capsize=3, markersize=5, label=name)
        for xi, row in zip(x, points):  # every run, faintly, beside its mean
            ax.plot([xi] * row["n"], [scale * v for v in row["values"]], ".", color="grey", alpha=0.5)
    remaining = sorted({100.0 * row["density"] for row in rows}, reverse=True)
    ax.set_xscale("log")
    ax.set_xlim(remaining[0] * 1.25, remaining[-1] / 1.25)  # reversed, as IMP's plots: from dense to sparse
    ax.xaxis.set_major_locator(FixedLocator(remaining))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:.3g}" for t in remaining])
    ax.set_xlabel("weights kept by the supermask (%, log scale)")
    ax.set_ylabel(f"final {metric}" + (" (%)" if scale == 100.0 else ""))
    n = max(row["n"] for row in rows)
    ax.set_title(f"Supermask runs: final {metric} vs. density"
                 + (" (mean over runs, 95% intervals)" if n > 1 else ""))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=2 if len(names) > 3 else 1)  # off the data
    return fig


def write_supermask_report(run_dirs: Sequence[str | os.PathLike], out: str, metric: str | None = None) -> list[str]:
    """Write :data:`FIGURE` and ``report.md`` for the SupermaskCallback runs in ``run_dirs`` into ``out``; return
    their paths."""
    runs = read_supermask_runs(run_dirs)
    metric, rows = summarize(runs, metric)
    os.makedirs(out, exist_ok=True)
    image = os.path.join(out, FIGURE)
    plot_supermask(metric, rows).savefig(image, dpi=120)
    page = os.path.join(out, "report.md")
    title = f"Supermask runs ({len(runs)})"
    with open(page, "w") as f:
        f.write(markdown_supermask(metric, rows, title, [os.path.relpath(image, out)]))
    return [image, page]
