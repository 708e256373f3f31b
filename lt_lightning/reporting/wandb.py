"""W&B views of an IMP run, for each :class:`~lightning.pytorch.loggers.WandbLogger` attached to the Trainer, and
of the verdicts over runs and their controls (:func:`log_verdicts_to_wandb`).

At each round's end: the round scalars on an ``imp/round`` x-axis (``define_metric``), a table with one row per
round, line plots of accuracy vs. % of weights remaining and of per-layer density per round, and the round's ticket
file as an artifact of type ``"ticket"`` (metadata: the round record). ``wandb`` is imported only when a
WandbLogger is attached: it is an optional extra.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from lt_lightning.callbacks._trainer import logger_key
from lt_lightning.reporting.aggregate import Aggregate, verdict_table
from lt_lightning.reporting.scalars import round_scalars
from lt_lightning.reporting.summary import accuracy_metric, round_table


@rank_zero_only
def log_round_to_wandb(trainer: pl.Trainer, history: Sequence[dict[str, Any]], metric: str | None = None) -> None:
    """Log the views of the last round of ``history`` to every attached WandbLogger's run.

    Tables and plots are rebuilt from the whole history each round (W&B shows the latest), so a resumed run shows
    every round. ``metric``: the accuracy plotted, by default :func:`~lt_lightning.reporting.summary.accuracy_metric`.
    """
    loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
    if not loggers:
        return
    import wandb

    record = history[-1]
    columns, rows = round_table(history)
    layer_rows = [[r["round"], layer, d] for r in history for layer, d in r.get("layer_density", {}).items()]
    try:
        metric = accuracy_metric(history, metric)
    except ValueError:
        metric = None  # the module logs nothing accuracy-like (or not yet): no accuracy plot, the rest still goes
    for logger in loggers:
        run = logger.experiment
        # Explicit names win over WandbLogger's "*" -> trainer/global_step. The round scalars come with imp/round
        # in one row; the densities logged when a round starts get that round's imp/round by W&B's step_sync.
        for name in round_scalars(record):
            if name != "imp/round":
                run.define_metric(logger_key(logger, name), step_metric=logger_key(logger, "imp/round"))
        table = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
        layers = wandb.Table(columns=["round", "layer", "density"], data=layer_rows)
        views = {
            "imp/round": record["round"],
            "imp/rounds": table,
            "imp/plots/layer_density": wandb.plot.line(
                layers, "round", "density", stroke="layer", title="density per layer per round"),
        }
        if metric is not None:
            views["imp/plots/accuracy_vs_weights_remaining"] = wandb.plot.line(
                table, "weights_remaining_pct", f"final/{metric}",
                title=f"final {metric} vs. % of prunable weights remaining")
        run.log({**{logger_key(logger, k): v for k, v in views.items()}, "trainer/global_step": trainer.global_step})
        if record.get("ticket") and os.path.isfile(record["ticket"]):
            artifact = wandb.Artifact(f"ticket-{run.id}", type="ticket", metadata=json.loads(json.dumps(dict(record))))
            artifact.add_file(record["ticket"])
            run.log_artifact(artifact, aliases=[f"round-{record['round']:02d}", "latest"])


def log_verdicts_to_wandb(result: Aggregate, image: str | None = None, **init: Any) -> str:
    """Log the verdicts of :func:`~lt_lightning.reporting.aggregate.aggregate` to a new W&B run
    (``wandb.init(**init)``, job type ``lt-report``): the table ``lt/verdicts`` (one row per density,
    :func:`~lt_lightning.reporting.aggregate.verdict_table`'s columns), ``lt/ticket_vs_controls`` (the PNG at
    ``image``), and in the summary the lowest matching density. Returns the run's id."""
    try:
        import wandb
    except ImportError as err:
        raise ImportError(f"logging to W&B needs wandb ({err}): pip install 'lt-lightning[wandb]'") from err

    columns, rows = verdict_table(result)
    run = wandb.init(job_type="lt-report", config={"runs": result.runs, "metric": result.metric, "eps": result.eps,
                                                   "confidence": result.confidence}, **init)
    try:
        views: dict[str, Any] = {"lt/verdicts": wandb.Table(columns=columns, data=rows, allow_mixed_types=True)}
        if image is not None:
            views["lt/ticket_vs_controls"] = wandb.Image(image)
        run.log(views)
        run.summary["lt/lowest_matching_density"] = result.lowest_matching_density
        return run.id
    finally:
        run.finish()
