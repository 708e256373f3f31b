"""Runs of one experiment with several seeds, and the controls of their tickets, aggregated per density.

Each run folder holds an IMP run's history and, from ``lt-lightning branch``, the results of controls of its tickets
(``branches/<control>/round_NN/seed_S/result.json``). Each run is one seed of the experiment: per density, the ticket
has one value per run, and so does each control, the mean over the seeds it was trained with on that run, so that
a control pairs with the ticket it is a control of. :func:`aggregate` gives the verdicts of
:func:`~lt_lightning.analysis.verdicts.compare` on them; :func:`markdown_verdicts` prints them.

Plain Python: no torch, no Lightning.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from lt_lightning.analysis.verdicts import compare, lowest_matching_density
from lt_lightning.layout import RUN_CONFIG
from lt_lightning.records import BRANCHES_DIR, RESULT_FILE, RoundRecord, default_mode, load_history, read_result

#: Config keys that may differ between the runs of one experiment: the seed and where outputs go.
IGNORED_KEYS = re.compile(
    r"^(seed_everything|ckpt_path|trainer\.default_root_dir"
    r"|trainer\.logger(\.\d+)?\.init_args\.(save_dir|name|version|id|dir)"
    r"|trainer\.callbacks\.\d+\.init_args\.dirpath)$"
)
#: The heading of the verdicts table in a report page.
VERDICTS_HEADING = "## Ticket vs. controls"
_BRANCH = re.compile(r"^round_(\d+)$"), re.compile(r"^seed_(\d+)$")


@dataclass
class Run:
    """One run folder: its IMP history, its LightningCLI config (``None`` without ``config.yaml``), and the records
    of its branches, ``{control: {round: [record per seed, by seed]}}``."""

    path: str
    history: list[RoundRecord]
    config: dict[str, Any] | None = None
    branches: dict[str, dict[int, list[RoundRecord]]] = field(default_factory=dict)

    @property
    def seed(self) -> Any:
        return (self.config or {}).get("seed_everything")


@dataclass
class Aggregate:
    """The verdict rows of runs (one per pruned round, densest first, each with its ``round``), the metric they
    compare and how, and notes on controls left out where some runs lack them."""

    runs: list[str]
    metric: str
    higher_is_better: bool
    eps: float
    confidence: float
    rows: list[dict[str, Any]]
    controls: list[str]
    notes: list[str]

    @property
    def lowest_matching_density(self) -> float | None:
        return lowest_matching_density(self.rows)


def read_runs(paths: Sequence[str | os.PathLike]) -> list[Run]:
    """Read each run folder (history, config, branches); with several, check that they are runs of one
    configuration. Errors name the folder, or the config keys that differ."""
    runs = []
    for path in paths:
        path = os.fspath(path)
        config_file = os.path.join(path, RUN_CONFIG)
        config = None
        history = load_history(path)  # names the folder when it holds no history
        if os.path.isfile(config_file):
            with open(config_file) as f:
                config = yaml.safe_load(f)
        runs.append(Run(path, history, config, read_branches(path)))
    if len(runs) > 1:
        check_distinct_runs(runs)
        check_same_experiment(runs)
    return runs


def check_distinct_runs(runs: Sequence[Run]) -> None:
    """``ValueError`` when one folder is given twice or two runs have the same ``seed_everything``: each run counts
    as one seed, so a repeated one would give intervals, p-values and verdicts from fewer runs than they claim."""
    folders: dict[str, str] = {}
    for run in runs:
        seen = folders.get(os.path.realpath(run.path))
        folders[os.path.realpath(run.path)] = run.path
        if seen is not None:
            raise ValueError(f"run folder {run.path!r} is given twice (also as {seen!r}): each run counts as one"
                             " seed; pass each run once.")
    by_seed: dict[Any, list[str]] = {}
    for run in runs:
        if run.seed is not None:
            by_seed.setdefault(run.seed, []).append(run.path)
    repeated = {seed: paths for seed, paths in by_seed.items() if len(paths) > 1}
    if repeated:
        shown = "; ".join(f"seed_everything {seed!r}: {paths}" for seed, paths in repeated.items())
        raise ValueError(f"runs with the same seed are one seed, not several ({shown}): copies of one run would"
                         " give zero-width intervals; pass one run per seed.")


def read_branches(run_dir: str | os.PathLike) -> dict[str, dict[int, list[RoundRecord]]]:
    """The records of the finished branches below ``run_dir`` (``{control: {round: [record per seed]}}``, seeds in
    increasing order); trainings without a result yet are left out."""
    root = os.path.join(os.fspath(run_dir), BRANCHES_DIR)
    found: dict[str, dict[int, list[RoundRecord]]] = {}
    for control in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for round_dir in sorted(os.listdir(os.path.join(root, control))):
            round_match = _BRANCH[0].match(round_dir)
            if not round_match:
                continue
            seeds = []
            for seed_dir in os.listdir(os.path.join(root, control, round_dir)):
                seed_match = _BRANCH[1].match(seed_dir)
                result = os.path.join(root, control, round_dir, seed_dir, RESULT_FILE)
                if seed_match and os.path.isfile(result):
                    seeds.append((int(seed_match.group(1)), read_result(result)[0]))
            if seeds:
                found.setdefault(control, {})[int(round_match.group(1))] = [r for _, r in sorted(seeds)]
    return found


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The dotted keys (list items by index) whose values differ between two configs, except :data:`IGNORED_KEYS`.

    >>> config_differences({"seed_everything": 0, "trainer": {"max_steps": 20, "callbacks": [{"lr": 0.1}]}},
    ...                    {"seed_everything": 1, "trainer": {"max_steps": 40, "callbacks": [{"lr": 0.1}]}})
    ['trainer.max_steps']
    """
    flat_a, flat_b = _flatten(a), _flatten(b)
    keys = list(dict.fromkeys([*flat_a, *flat_b]))
    return [k for k in keys if not IGNORED_KEYS.match(k) and flat_a.get(k, _MISSING) != flat_b.get(k, _MISSING)]


def check_same_experiment(runs: Sequence[Run]) -> None:
    """``ValueError`` unless the runs are seeds of one experiment: the same config (up to :data:`IGNORED_KEYS`)
    and the same density in each round they share."""
    with_config = [run for run in runs if run.config is not None]
    if with_config and len(with_config) < len(runs):
        lacking = [run.path for run in runs if run.config is None]
        raise ValueError(f"cannot check that the runs share one configuration: {lacking} hold no config.yaml while"
                         f" {with_config[0].path!r} does.")
    first = runs[0]
    for run in with_config[1:]:
        differ = config_differences(first.config or {}, run.config or {})
        if differ:
            flat_a, flat_b = _flatten(first.config or {}), _flatten(run.config or {})
            shown = "; ".join(f"{k}: {flat_a.get(k, '(absent)')!r} vs {flat_b.get(k, '(absent)')!r}"
                              for k in differ[:8])
            raise ValueError(
                f"runs of different configurations cannot be aggregated: {first.path!r} and {run.path!r} differ in"
                f" {differ}{' ...' if len(differ) > 8 else ''} ({shown}); only seed_everything and output paths"
                " may differ between the seeds of one experiment."
            )
    for run in runs[1:]:
        for mine, theirs in zip(first.history, run.history):
            if not math.isclose(mine.density, theirs.density, rel_tol=1e-9):
                raise ValueError(
                    f"runs of different configurations cannot be aggregated: round {mine.round} has density"
                    f" {mine.density:.6g} in {first.path!r} and {theirs.density:.6g} in {run.path!r}."
                )


def aggregate(runs: Sequence[Run], metric: str, *, eps: float = 0.002, confidence: float = 0.95) -> Aggregate:
    """Verdict rows per pruned round over the runs, for the final value of ``metric``: dense is round 0 of each run,
    the ticket each later round, each control the mean over its seeds on that run. A control that some run lacks
    at a round is left out of that round's row, with a note. Rows also compare early-stopping steps where all have
    them (``learns_faster``)."""
    if len(runs[0].history) < 2:
        raise ValueError(f"{runs[0].path!r} holds round 0 only: no ticket to compare with dense.")
    mode = runs[0].history[0].mode if runs[0].history[0].monitor == metric else default_mode(metric)
    higher = mode == "max"
    dense = [_final(run.history[0], metric, f"{run.path!r}, round 0") for run in runs]
    ticket: dict[float, list[float]] = {}
    steps: dict[float, list[Any]] = {}
    controls: dict[str, dict[float, list[float]]] = {}
    control_steps: dict[str, dict[float, list[Any]]] = {}
    rounds: dict[float, int] = {}
    notes = []
    names = sorted({name for run in runs for name in run.branches})
    for record in runs[0].history[1:]:
        present = [run for run in runs if len(run.history) > record.round]
        density = record.density
        rounds[density] = record.round
        ticket[density] = [_final(run.history[record.round], metric, f"{run.path!r}, round {record.round}")
                           for run in present]
        steps[density] = [run.history[record.round].best_step for run in present]
        for name in names:
            missing = [run.path for run in present if not run.branches.get(name, {}).get(record.round)]
            if len(missing) == len(present):
                continue
            if missing:
                notes.append(f"{name} at round {record.round} (density {density:.4g}) is left out: no result in"
                             f" {missing}")
                continue
            trained = [run.branches[name][record.round] for run in present]
            controls.setdefault(name, {})[density] = [
                statistics.fmean(_final(r, metric, repr(os.path.join(run.path, BRANCHES_DIR, name,
                                                                     f"round_{record.round:02d}")))
                                 for r in records)
                for run, records in zip(present, trained)]
            control_steps.setdefault(name, {})[density] = [
                statistics.fmean(r.best_step for r in records) if all(r.best_step is not None for r in records)
                else None for records in trained]
    known = _complete(steps) and all(_complete(by) for by in control_steps.values())
    rows = compare(dense, ticket, controls, eps=eps, confidence=confidence, higher_is_better=higher,
                   ticket_steps=steps if known else None, control_steps=control_steps if known and controls else None)
    for row in rows:
        row["round"] = rounds[row["density"]]
    return Aggregate([run.path for run in runs], metric, higher, eps, confidence, rows, sorted(controls), notes)


def verdict_table(result: Aggregate) -> tuple[list[str], list[list[Any]]]:
    """Columns and one row of plain values per density (for Markdown and W&B tables); missing values are ``None``.

    >>> rows = compare([0.9, 0.91], {0.5: [0.905, 0.9]}, {"reinit": {0.5: [0.88, 0.87]}})
    >>> rows[0]["round"] = 1
    >>> columns, table = verdict_table(Aggregate(["a", "b"], "val_acc", True, 0.002, 0.95, rows, ["reinit"], []))
    >>> dict(zip(columns, table[0]))["reinit_mean"], dict(zip(columns, table[0]))["winning"]
    (0.875, True)
    """
    columns = ["round", "density", "weights_remaining_pct", "n", "ticket_mean", "ticket_ci_low", "ticket_ci_high",
               "diff_dense_mean", "matching"]
    for name in result.controls:
        columns += [f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high", f"{name}_diff_mean", f"{name}_p_value",
                    f"{name}_beaten"]
    columns.append("winning")
    steps = bool(result.rows) and "ticket_steps_mean" in result.rows[0]
    if steps:
        columns += ["ticket_steps_mean", *(f"{name}_{key}" for name in result.controls
                                           for key in ("steps_mean", "learns_faster"))]
    table = []
    for row in result.rows:
        values = [row["round"], row["density"], 100 * row["density"], row["n"], row["ticket_mean"],
                  row["ticket_ci_low"], row["ticket_ci_high"], row["diff_dense_mean"], row["matching"]]
        for name in result.controls:
            entry = row["controls"].get(name, {})
            values += [entry.get("mean"), entry.get("ci_low"), entry.get("ci_high"), entry.get("diff_mean"),
                       entry.get("p_value"), entry.get("beats")]
        values.append(row["winning"])
        if steps:
            values.append(row["ticket_steps_mean"])
            for name in result.controls:
                entry = row["controls"].get(name, {})
                values += [entry.get("steps_mean"), entry.get("learns_faster")]
        table.append(values)
    return columns, table


def markdown_verdicts(result: Aggregate, title: str | None = None, images: Sequence[str] = ()) -> str:
    """The verdicts as Markdown: a summary, one table row per density, how to read it, then ``images``. With a
    ``title`` a page of its own (``#``), without one a section (``##``) to append to a run's report."""
    show = _points if result.higher_is_better else _number
    unit = " (%)" if result.higher_is_better else ""
    first = result.rows[0] if result.rows else None
    lowest = result.lowest_matching_density
    winning = [r["density"] for r in result.rows if r["winning"]]
    seeds = len(result.runs)
    lines = [f"# {title}" if title else VERDICTS_HEADING, ""]
    lines += [f"- runs (seeds): {seeds}: " + ", ".join(f"`{p}`" for p in result.runs),
              f"- metric: final {result.metric} ({'higher' if result.higher_is_better else 'lower'} is better),"
              f" matching within {show(result.eps)}{' points' if result.higher_is_better else ''} of dense,"
              f" {100 * result.confidence:.3g}% intervals"]
    if first is not None:
        lines.append(f"- dense: {_estimate(first, 'dense_', show)}")
    lines.append(f"- lowest matching density: {_density(lowest) if lowest is not None else 'none'}")
    if result.controls:
        lines.append(f"- winning (matching and better than {', '.join(result.controls)}): "
                     + (", ".join(_density(d) for d in winning) if winning else "at no density"))
    header = ["round", "% weights remaining", "n", f"ticket{unit}", "ticket - dense", "matching"]
    for name in result.controls:
        header += [f"{name}{unit}", f"ticket - {name} (p)"]
    header += ["winning"] if result.controls else []
    steps = bool(result.rows) and "ticket_steps_mean" in result.rows[0]
    header += ["early-stopping step"] if steps else []
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for row in result.rows:
        cells = [str(row["round"]), f"{100 * row['density']:.3g}", str(row["n"]), _estimate(row, "ticket_", show),
                 _difference(row["diff_dense_mean"], row["diff_dense_ci_low"], row["diff_dense_ci_high"], show),
                 _yes(row["matching"])]
        for name in result.controls:
            entry = row["controls"].get(name)
            if entry is None:
                cells += ["n/a", "n/a"]
                continue
            p = f" (p={entry['p_value']:.3g})" if entry["p_value"] is not None else ""
            cells += [_estimate(entry, "", show),
                      _difference(entry["diff_mean"], entry["diff_ci_low"], entry["diff_ci_high"], show) + p
                      + (" ✓" if entry["beats"] else "")]
        cells += [_yes(row["winning"])] if result.controls else []
        if steps:
            theirs = [f"{name} {entry['steps_mean']:.4g}" for name, entry in row["controls"].items()
                      if entry.get("steps_mean") is not None]
            cells.append(f"{row['ticket_steps_mean']:.4g}" + (f" ({', '.join(theirs)})" if theirs else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if seeds > 1:
        lines += ["", f"Values are means over the {seeds} runs [{100 * result.confidence:.3g}% interval, Student t]."
                  " *Matching*: the interval of ticket - dense (Welch) reaches within the margin of dense. A control"
                  f" is beaten (✓) when a one-sided paired t-test over the runs gives p < {1 - result.confidence:.3g}."
                  " *Winning*: matching and beating every control at that density."]
    else:
        lines += ["", "One run: single values, no statistics (aggregate several seeds for those). *Matching*: within"
                  " the margin of dense. A control is beaten (✓) when the ticket is strictly better. *Winning*:"
                  " matching and beating every control at that density."]
    if steps:
        lines.append("*Early-stopping step*: the step of the best monitored value in one training, mean over the"
                     " runs, of the ticket (and of each control): a winning ticket learns faster (Frankle & Carbin).")
    lines += [f"- note: {note}" for note in result.notes]
    if images:
        lines.append("")
        lines += [f"![{os.path.splitext(os.path.basename(image))[0]}]({image})" for image in images]
    return "\n".join(lines) + "\n"


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        items = [(f"{prefix}{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{prefix}{i}", v) for i, v in enumerate(value)]
    else:
        return {prefix[:-1]: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        if isinstance(item, (Mapping, list)) and item:
            flat.update(_flatten(item, key + "."))
        else:
            flat[key] = item
    return flat


def _final(record: RoundRecord, metric: str, where: str) -> float:
    if metric not in record.final:
        raise ValueError(f"{where} has no final {metric!r}; its metrics are {sorted(record.final)}.")
    return record.final[metric]


def _complete(by_density: Mapping[float, Sequence[Any]]) -> bool:
    return all(v is not None for values in by_density.values() for v in values)


def _points(value: float) -> str:
    return f"{100 * value:.2f}"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _estimate(stats: Mapping[str, Any], prefix: str, show: Any) -> str:
    text = show(stats[prefix + "mean"])
    if stats.get(prefix + "ci_low") is not None:
        text += f" [{show(stats[prefix + 'ci_low'])}, {show(stats[prefix + 'ci_high'])}]"
    return text


def _difference(mean: float, low: float | None, high: float | None, show: Any) -> str:
    sign = "+" if mean >= 0 else ""
    text = f"{sign}{show(mean)}"
    return text + (f" [{show(low)}, {show(high)}]" if low is not None else "")


def _density(density: float) -> str:
    return f"{density:.4g} ({100 * density:.3g}% of weights remaining)"


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else "yes" if value else "no"
