"""Linear mode connectivity results shown: scalars to every logger, W&B line plots and tables, Markdown tables, and
the report folder (PNGs + ``report.md``) of an instability analysis or a rewind-point search.

Every logger attached to the analysis' Trainer gets, on rank zero, per point ``i`` of a curve (at step ``i``)
``lmc/alpha`` and ``lmc/<metric>`` for each metric (``lmc/val_err``, ``lmc/val_loss``, ...), then ``lmc/barrier``,
``lmc/loss_barrier`` and ``lmc/stable`` (1 or 0); a rewind-point search logs each step's curve under
``lmc/step_<k>/...`` and per step ``k`` (at step ``k``) ``lmc/rewind_step``, ``lmc/barrier``, ``lmc/stable`` and,
with tickets, ``lmc/ticket_error``, ``lmc/dense_error``, ``lmc/matches``. A ``WandbLogger`` also gets a line plot per
analysis (``<prefix>/plots/error_vs_alpha``) and the curve as a table; W&B is imported only then.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lt_lightning.layout import INSTABILITY_FILE, REPORT_DIR, REPORT_PAGE, SEARCH_FILE


@rank_zero_only
def log_instability(trainer: pl.Trainer, result: Mapping[str, Any], prefix: str = "lmc") -> None:
    """Send a curve and its barrier to every logger of ``trainer`` (see the module docstring)."""
    curve, key = result["curve"], result["key"]
    for logger in trainer.loggers:
        for i, point in enumerate(curve):
            logger.log_metrics({f"{prefix}/{name}": value for name, value in point.items()}, step=i)
        summary = {f"{prefix}/barrier": result["barrier"], f"{prefix}/stable": float(result["stable"])}
        if result.get("loss_barrier") is not None:
            summary[f"{prefix}/loss_barrier"] = result["loss_barrier"]
        logger.log_metrics(summary, step=len(curve) - 1)
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(columns=list(curve[0]), data=[list(p.values()) for p in curve])
            title = f"{key} along the linear path, step {result['step']}: barrier {result['barrier']:.3g}"
            logger.experiment.log({f"{prefix}/curve": table,
                                   f"{prefix}/plots/error_vs_alpha": wandb.plot.line(table, "alpha", key, title=title)})
        logger.save()


@rank_zero_only
def log_rewind_search(trainer: pl.Trainer, search: Mapping[str, Any]) -> None:
    """Send a rewind-point search (one row per step) to every logger of ``trainer``; each step's curve is sent by
    :func:`log_instability` with the prefix ``lmc/step_<k>``."""
    names = {"step": "rewind_step", "barrier": "barrier", "ticket_error": "ticket_error",
             "dense_error": "dense_error", "ticket_density": "ticket_density"}
    for logger in trainer.loggers:
        for row in search["rows"]:
            scalars = {f"lmc/{names[k]}": float(v) for k, v in row.items() if k in names}
            scalars["lmc/stable"] = float(row["stable"])
            if "matches" in row:
                scalars["lmc/matches"] = float(row["matches"])
            logger.log_metrics(scalars, step=row["step"])
        if isinstance(logger, WandbLogger):
            import wandb

            columns, rows = search_table(search)
            table = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
            logger.experiment.log({"lmc/rewind_search": table, "lmc/plots/barrier_vs_rewind_step": wandb.plot.line(
                table, "step", "barrier", title=f"{search['key']} barrier vs. rewind step")})
        logger.save()


def search_table(search: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and one row per rewind step of a search.

    >>> search_table({"rows": [{"step": 0, "barrier": 0.1, "stable": False, "copy_errors": [0.2, 0.3]}]})
    (['step', 'barrier', 'stable', 'copy_error_a', 'copy_error_b'], [[0, 0.1, False, 0.2, 0.3]])
    """
    columns = ["step", "barrier", "stable", "copy_error_a", "copy_error_b"]
    tickets = any("ticket_error" in r for r in search["rows"])
    if tickets:
        columns += ["ticket_round", "ticket_density", "ticket_error", "dense_error", "matches"]
    rows = [[r["step"], r["barrier"], r["stable"], *r["copy_errors"], *((r.get(c) for c in columns[5:]) if tickets
                                                                          else ())] for r in search["rows"]]
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_instability(result: Mapping[str, Any], images: Sequence[str] = ()) -> str:
    """An instability analysis as Markdown: the verdict, a summary table and the curve, one row per point.

    >>> print(markdown_instability({"step": 0, "key": "e", "barrier": 0.0, "stable": True, "threshold": 0.02,
    ...     "seeds": [1, 2], "density": 1.0, "points": 2, "loss_barrier": None, "l2_distance": 1.0,
    ...     "cosine_similarity": 0.5, "endpoints": [{"e": 0.1}, {"e": 0.1}],
    ...     "curve": [{"alpha": 0.0, "e": 0.1}, {"alpha": 1.0, "e": 0.1}]}))  # doctest: +NORMALIZE_WHITESPACE
    # Instability at step 0
    <BLANKLINE>
    Two copies (seeds 1, 2) trained from step 0; e barrier **0** along 2 points: **stable** (threshold 0.02).
    <BLANKLINE>
    | step | density | e barrier | loss barrier | stable | e copy A | e copy B | L2 distance | cosine similarity |
    |---:|---:|---:|---:|---:|---:|---:|---:|---:|
    | 0 | 1 | 0 | n/a | yes | 0.1 | 0.1 | 1 | 0.5 |
    <BLANKLINE>
    ## Curve
    <BLANKLINE>
    | alpha | e |
    |---:|---:|
    | 0 | 0.1 |
    | 1 | 0.1 |
    <BLANKLINE>
    """
    key = result["key"]
    verdict = "stable" if result["stable"] else "unstable"
    text = [f"# Instability at step {result['step']}\n",
            f"Two copies (seeds {', '.join(str(s) for s in result['seeds'])}) trained from step {result['step']}; {key}"
            f" barrier **{_cell(result['barrier'])}** along {result['points']} points: **{verdict}** (threshold"
            f" {result['threshold']:g}).\n"]
    text += [f"![{os.path.splitext(os.path.basename(i))[0]}]({i})\n" for i in images]
    a, b = result["endpoints"]
    text.append(_table(["step", "density", f"{key} barrier", "loss barrier", "stable", f"{key} copy A",
                        f"{key} copy B", "L2 distance", "cosine similarity"],
                       [[result["step"], result["density"], result["barrier"], result["loss_barrier"],
                         result["stable"], a[key], b[key], result["l2_distance"], result["cosine_similarity"]]]))
    columns = list(result["curve"][0])
    text += ["## Curve\n", _table(columns, [[p.get(c) for c in columns] for p in result["curve"]])]
    return "\n".join(text)


def markdown_rewind_search(search: Mapping[str, Any], images: Sequence[str] = ()) -> str:
    """A rewind-point search as Markdown: the earliest stable and matching steps and one row per step."""
    text = [f"# Rewind-point search ({search['key']})\n",
            f"Earliest stable step (barrier below {search['threshold']:g}): **{_cell(search['earliest_stable'])}**."]
    if any("ticket_error" in r for r in search["rows"]):
        text.append(f"Earliest step whose IMP ticket matches dense (within {search['eps']:g}):"
                    f" **{_cell(search['earliest_matching'])}**.")
    text[-1] += "\n"
    text += [f"![{os.path.splitext(os.path.basename(i))[0]}]({i})\n" for i in images]
    text.append(_table(*search_table(search)))
    return "\n".join(text)


def read_lmc(folder: str | os.PathLike) -> Mapping[str, Any] | None:
    """The typed result an analysis left in ``folder`` (``rewind_search.json`` or ``instability.json``), or
    ``None`` (:func:`lt_lightning.experiments.results.read_analysis`)."""
    from lt_lightning.experiments.results import read_analysis  # the experiments import this module

    return read_analysis(folder)


def write_lmc_report(folder: str | os.PathLike, out: str | os.PathLike | None = None) -> list[str]:
    """Write the PNG and ``report.md`` of the analysis in ``folder`` into ``out`` (default ``folder/report``);
    return the paths written. ``ValueError`` if ``folder`` holds no analysis."""
    result = read_lmc(folder)
    if result is None:
        raise ValueError(f"{os.fspath(folder)!r} holds neither {SEARCH_FILE} nor {INSTABILITY_FILE}: it is not the"
                         " folder of `lt-lightning instability` or `lt-lightning rewind-search`.")
    try:
        from lt_lightning.reporting.lmc_plots import DPI, plot_error_vs_alpha, plot_rewind_search
    except ImportError as err:
        raise ImportError(f"the report draws with matplotlib, which is missing ({err}): pip install matplotlib") from err
    out = os.fspath(out) if out is not None else os.path.join(os.fspath(folder), REPORT_DIR)
    os.makedirs(out, exist_ok=True)
    if result["analysis"] == "rewind_search":
        figures = {"rewind_search.png": plot_rewind_search(result)}
        steps = [read_lmc(r["out"]) for r in result["rows"]]
        if all(steps):
            figures["error_vs_alpha.png"] = plot_error_vs_alpha(steps)  # type: ignore[arg-type]
    else:
        figures = {"error_vs_alpha.png": plot_error_vs_alpha([result])}
    paths = []
    for name, figure in figures.items():
        paths.append(os.path.join(out, name))
        figure.savefig(paths[-1], dpi=DPI)
    page = os.path.join(out, REPORT_PAGE)
    write = markdown_rewind_search if result["analysis"] == "rewind_search" else markdown_instability
    with open(page, "w") as f:
        f.write(write(result, [os.path.basename(p) for p in paths]))
    return [*paths, page]
