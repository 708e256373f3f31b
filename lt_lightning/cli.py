"""The ``lt-lightning`` command.

- ``lt-lightning fit --config FILE.yaml`` (also ``validate``, ``test``, ``predict``): LightningCLI; the model, the
  datamodule and the callbacks (``IMPCallback``, ``RewindCallback``, ``MaskingCallback``, ...) by class path.
- ``lt-lightning report RUN_DIR``: PNG plots and a Markdown summary from a run's ``imp_history.json``, without W&B;
  for SupermaskCallback runs, accuracy against density.
- ``lt-lightning ticket inspect FILE``: a ticket's densities (global and per layer), what an export would store,
  and metadata.
- ``lt-lightning ticket compare A B``: how alike two tickets' masks are (IoU per layer and overall).
- ``lt-lightning ticket export TICKET --config RUN/config.yaml --out FILE``: the ticket as a plain module, sparse
  where measured faster, and what it saves (:mod:`lt_lightning.export`).
- ``lt-lightning experiment --config FILE.yaml --seeds 0 1 2``: IMP per seed, the controls of every run's tickets
  and the report across seeds, through a launcher (:mod:`lt_lightning.experiments.experiment`).
- ``lt-lightning branch RUN_DIR``: controls of an IMP run's tickets, each a plain ``fit``
  (:mod:`lt_lightning.experiments.branch`).
- ``lt-lightning instability --config FILE.yaml`` and ``lt-lightning rewind-search --config FILE.yaml --steps ...``:
  linear mode connectivity of two copies trained from one state, each a plain ``fit``
  (:mod:`lt_lightning.experiments.lmc`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from jsonargparse import ArgumentError
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from typing_extensions import override

import lt_lightning.zoo  # noqa: F401  # so that configs may name zoo classes by their short names too
from lt_lightning import export
from lt_lightning.analysis import mask_similarity
from lt_lightning.experiments import branch, experiment, lmc
from lt_lightning.experiments.configs import config_class, quiet_lightning
from lt_lightning.experiments.emit import EMITS, emit
from lt_lightning.experiments.launchers import LAUNCHERS, Launcher, make_launcher
from lt_lightning.experiments.lock import folder_lock
from lt_lightning.layout import REPORT_DIR, REPORT_PAGE
from lt_lightning.reporting.aggregate import VERDICTS_HEADING, aggregate, markdown_verdicts, read_runs
from lt_lightning.reporting.lmc import read_lmc, write_lmc_report
from lt_lightning.reporting.summary import HISTORY_FILE, accuracy_metric, markdown_report
from lt_lightning.reporting.supermask import is_supermask_run, write_supermask_report
from lt_lightning.ticket import Ticket, load_ticket

_LIGHTNING = ("fit", "validate", "test", "predict")


class ConfigError(ValueError):
    """A config file or command line that LightningCLI cannot parse, or whose classes refuse their arguments."""


class LTLightningCLI(LightningCLI):
    """LightningCLI for any LightningModule and LightningDataModule, chosen by class path in the config; parse and
    instantiation errors raise :class:`ConfigError` with the message only (jsonargparse's usage text and the
    traceback add nothing to "unknown key" or "value not allowed")."""

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ConfigError(_condense(str(err))) from err

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:
            # jsonargparse wraps a class's own ValueError in a list of every type it tried: report the class's one.
            cause: BaseException = err
            while isinstance(cause.__cause__ or cause.__context__, ValueError):
                cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
            raise ConfigError(f"a configured class refused its arguments: {cause}") from err


def _condense(message: str) -> str:
    """Of jsonargparse's report on a value that fits none of a Union's types, keep the part about the class the
    config names (the other types were never meant); other messages are kept whole.

    >>> print(_condense('''Parser key "trainer.callbacks":
    ...   Does not validate against any of the Union subtypes
    ...   Errors:
    ...     - Problem with given class_path 'lt_lightning.IMPCallback':
    ...         Option 'foo' is not accepted
    ...     - Not a valid subclass of Callback
    ...   Given value type: <class 'list'>'''))
    Parser key "trainer.callbacks": Problem with given class_path 'lt_lightning.IMPCallback': Option 'foo' is not accepted
    """
    lines = message.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("- Problem with given class_path"):
            indent = len(line) - len(line.lstrip())
            block = [line.strip()[2:]]
            for following in lines[i + 1:]:
                if len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            return " ".join([lines[0], *block])
    return message


def lightning_cli(args: Sequence[str] | None = None) -> LTLightningCLI:
    """Run a LightningCLI sub-command (``fit``, ...) on ``args`` (default: the command line).

    The working folder goes first on ``sys.path``, as ``python script.py`` would put the script's: a config may name
    ``class_path: mymod.MyNet`` for a ``mymod.py`` beside it (a console script alone does not see that folder).
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return LTLightningCLI(
        pl.LightningModule,
        None,  # any LightningDataModule by class path, or none: a module may bring its own dataloaders
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if args is None else list(args),
        # Rounds of one experiment share the log dir; a re-run into the same dir replaces its config.yaml.
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "lt-lightning", "exit_on_error": False},
    )


def _branch(args: argparse.Namespace) -> None:
    launcher = None if args.dry_run else _launcher(args)
    branches = branch.plan_branches(args.run_dir, args.control, args.rounds, args.seeds)
    done = sum(b.job.done for b in branches)
    print(f"lt-lightning branch: {len(branches)} trainings of {args.run_dir} ({done} done before)", file=sys.stderr)
    if args.dry_run:
        _print_dry_run([branch.write_configs(args.run_dir, [b for b in branches if not b.job.done])], args)
    else:
        branch.run_branches(args.run_dir, branches, launcher)


def _experiment(args: argparse.Namespace) -> None:
    """``experiment``: IMP per seed, the controls of every run's tickets, the report across seeds; under the
    experiment folder's lock."""
    launcher = None if args.dry_run else _launcher(args)
    out = experiment.experiment_out(args.config, args.out)
    with folder_lock(out, f"lt-lightning experiment --config {args.config}"):
        plan = experiment.plan_experiment(args.config, args.seeds, args.controls, args.rounds, out)
        print(f"lt-lightning experiment: IMP with seeds {' '.join(map(str, plan.seeds))}, then controls"
              f" {' '.join(plan.controls)} of their tickets, into {out}", file=sys.stderr)
        if args.dry_run:
            imp, controls = experiment.stages(plan)
            if imp:
                print("lt-lightning experiment: the controls are planned once the IMP runs are done (they need their"
                      " tickets): run this command again then.", file=sys.stderr)
            _print_dry_run([imp, controls], args)
            return
        runs = experiment.run_experiment(plan, launcher)
        report_dir = os.path.join(out, REPORT_DIR)
        for path in report(runs, report_dir, args.metric, args.eps, overwrite=True):
            print(path)
    with open(os.path.join(report_dir, REPORT_PAGE)) as f:
        print("\n" + verdict_section(f.read()))


def verdict_section(page: str) -> str:
    r"""The ticket-against-controls section of a ``report.md`` (up to the next section), or the page without one.

    >>> verdict_section("# Run\n## Ticket vs. controls\n| a |\n## Plots\n")
    '## Ticket vs. controls\n| a |'
    """
    start = page.find(VERDICTS_HEADING)
    if start < 0:
        return page.strip()
    end = page.find("\n## ", start + len(VERDICTS_HEADING))
    return page[start:end if end >= 0 else len(page)].strip()


def _launcher(args: argparse.Namespace, section: dict[str, Any] | None = None) -> Launcher:
    """The launcher the flags name, with the options of a config's ``launcher:`` section under the flags given."""
    section = dict(section or {})
    name = args.launcher or section.pop("name", "local")
    flags = {"workers": args.workers, "partition": args.partition, "time_min": args.time_min,
             "gpus_per_job": args.gpus_per_job, "cpus_per_job": args.cpus_per_job, "cluster": args.cluster}
    return make_launcher(name, {**section, **{k: v for k, v in flags.items() if v is not None}})


def _print_dry_run(stages: Sequence[Sequence[Any]], args: argparse.Namespace) -> None:
    """One command per job not done; with ``--emit``, the first stage's sweep or array script (later stages need
    its outputs: emit again once it is done)."""
    stages = [s for s in stages if s]
    if args.emit is None:
        print("\n".join(job.command for stage in stages for job in stage))
        return
    if len(stages) > 1:
        print(f"lt-lightning: --emit {args.emit} gives the first of {len(stages)} stages; the next need its outputs:"
              " run this command again once it is done.", file=sys.stderr)
    slurm = {k: getattr(args, k) for k in ("partition", "time_min", "gpus_per_job", "cpus_per_job")
             if getattr(args, k) is not None}
    print(emit(args.emit, stages[0] if stages else [], **({} if args.emit == "wandb-sweep" else slurm)))


def _launcher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launchers")
    group.add_argument("--launcher", metavar="NAME", help=f"what runs the trainings: {', '.join(sorted(LAUNCHERS))}"
                       " (default: local, one after another in this process)")
    group.add_argument("--workers", type=int, help="processes launcher: trainings at a time (default: one per"
                       " visible GPU, else one per CPU core)")
    group.add_argument("--partition", help="submitit launcher: SLURM partition")
    group.add_argument("--time-min", type=int, help="submitit launcher: time limit per training, minutes (60)")
    group.add_argument("--gpus-per-job", type=int, help="submitit launcher: GPUs per training (0)")
    group.add_argument("--cpus-per-job", type=int, help="submitit launcher: CPUs (and torch threads) per training (1)")
    group.add_argument("--cluster", choices=["slurm", "local", "debug"], help="submitit launcher: where (default:"
                       " SLURM where submitit finds it)")
    group.add_argument("--emit", choices=EMITS, help="with --dry-run: print a W&B sweep YAML or an sbatch array"
                       " script that runs the trainings, instead of the command lines")


def _lmc(args: argparse.Namespace) -> None:
    """``instability`` and ``rewind-search``: the trainings (or, with --dry-run, their commands), then the report."""
    shared = dict(seeds=args.seeds, points=args.points, threshold=args.threshold, key=args.key,
                  accuracy_scale=args.accuracy_scale, bn_batches=args.bn_batches, out=args.out, cli=LTLightningCLI,
                  dry_run=args.dry_run, launcher=None if args.dry_run else _launcher(args))
    if args.command == "instability":
        result = lmc.instability(args.config, args.start, step=args.step, ticket=args.ticket, **shared)
    else:
        result = lmc.rewind_search(args.config, args.steps, imp_runs=args.imp_runs, run_imp=args.imp,
                                   density=args.density, eps=args.eps, **shared)
    if args.dry_run:
        _print_dry_run(result["stages"], args)
    elif pl.utilities.rank_zero_only.rank == 0:
        for path in write_lmc_report(result["out"], os.path.join(result["out"], REPORT_DIR)):
            print(path)


def _lmc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the LightningCLI config of one training, as for `fit`")
    parser.add_argument("--seeds", nargs=2, type=_seed, default=[1, 2], metavar="S",
                        help="the two copies' seeds (data order and seed_everything; default: 1 2)")
    parser.add_argument("--points", type=int, default=30, help="points on the linear path (default: 30)")
    parser.add_argument("--threshold", type=float, help="stable below this barrier (default: 0.02, 2 points)")
    parser.add_argument("--key", default="val_err", help="the error to read the barrier from (default: val_err;"
                        " a logged `*acc*` metric gives its `*err*`)")
    parser.add_argument("--accuracy-scale", type=float, default=1.0, help="100 for accuracies logged in percent")
    parser.add_argument("--bn-batches", type=int, help="training batches to re-estimate BatchNorm statistics at"
                        " each point (default: 10 with BatchNorm; 0: interpolate them)")
    parser.add_argument("--out", help="output folder (default: under the config's default_root_dir or lt_logs)")
    parser.add_argument("--dry-run", action="store_true", help="write each training's config and print its command"
                        " line, in order (the start state first), instead of running it")
    _launcher_arguments(parser)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None


def _config_files(args: Sequence[str]) -> list[str]:
    """The ``-c``/``--config`` values in a LightningCLI command line.

    >>> _config_files(["fit", "-c", "a.yaml", "--config=b.yaml", "--trainer.max_steps", "5"])
    ['a.yaml', 'b.yaml']
    """
    files = [value for flag, value in zip(args, args[1:]) if flag in ("-c", "--config")]
    return files + [a.split("=", 1)[1] for a in args if a.startswith("--config=")]


def report(run_dirs: str | Sequence[str], out: str | None = None, metric: str | None = None,
           eps: float = 0.002, wandb_project: str | None = None, overwrite: bool = False) -> list[str]:
    """Write the plots and ``report.md`` into ``out``; return the paths written. A ``report.md`` already in an
    ``out`` given is kept (``FileExistsError``) unless ``overwrite``; the default ``out`` is the report's own folder,
    rewritten each time. One run: its rounds (default
    ``out``: ``RUN_DIR/report``), and the verdicts against the controls of its tickets if it has branches. Several
    runs (seeds of one experiment): the verdicts per density over them (default ``out``: ``report/`` in their
    common folder). With ``wandb_project``, the verdicts also go to a new W&B run of that project. SupermaskCallback
    runs (a supermask ticket, no IMP history): the final accuracy of each against its density, grouped by method
    (:mod:`lt_lightning.reporting.supermask`)."""
    run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
    if out is not None and not overwrite and os.path.exists(os.path.join(out, REPORT_PAGE)):
        raise FileExistsError(f"{os.path.join(out, REPORT_PAGE)!r} exists and would be overwritten: pass --overwrite"
                              " (overwrite=True) to replace it, or choose another --out.")
    if len(run_dirs) == 1 and read_lmc(run_dirs[0]) is not None:  # an instability analysis or rewind search
        return write_lmc_report(run_dirs[0], out)
    if any(is_supermask_run(d) for d in run_dirs):  # SupermaskCallback runs: accuracy against density
        if wandb_project is not None:
            raise ValueError("--wandb-project logs IMP verdicts against controls; supermask runs have none.")
        try:
            return write_supermask_report(run_dirs, _default_out(run_dirs) if out is None else out, metric)
        except ImportError as err:
            raise ImportError(f"`lt-lightning report` draws with matplotlib, which is missing ({err}):"
                              " pip install matplotlib") from err
    runs = read_runs(run_dirs)
    history = runs[0].history
    metric = accuracy_metric(history, metric)
    verdicts = aggregate(runs, metric, eps=eps) if len(runs) > 1 or runs[0].branches else None
    if wandb_project is not None and verdicts is None:
        raise ValueError("--wandb-project logs the verdicts against controls, and this run has no branches: run"
                         " `lt-lightning branch` first, or report several seeds.")
    out = _default_out(run_dirs) if out is None else out
    try:
        from lt_lightning.reporting.plots import write_plots, write_verdict_plot
    except ImportError as err:
        raise ImportError(f"`lt-lightning report` draws with matplotlib, which is missing ({err}):"
                          " pip install matplotlib") from err
    images = write_plots(history, out, metric) if len(runs) == 1 else []
    compared = [write_verdict_plot(verdicts, out)] if verdicts is not None else []
    page = os.path.join(out, REPORT_PAGE)
    if len(runs) == 1:
        from lt_lightning.reporting.ticket_sizes import markdown_ticket_sizes

        text = markdown_report(history, f"IMP run {os.path.abspath(run_dirs[0])}", metric,
                               [os.path.relpath(p, out) for p in images])
        sizes = markdown_ticket_sizes(run_dirs[0], history)
        text += "\n" + sizes if sizes else ""
        if verdicts is not None:
            text += "\n" + markdown_verdicts(verdicts, images=[os.path.relpath(p, out) for p in compared])
    else:
        assert verdicts is not None
        text = markdown_verdicts(verdicts, f"IMP runs over {len(runs)} seeds",
                                 [os.path.relpath(p, out) for p in compared])
    with open(page, "w") as f:
        f.write(text)
    if wandb_project is not None:
        from lt_lightning.reporting.wandb import log_verdicts_to_wandb

        log_verdicts_to_wandb(verdicts, compared[0], project=wandb_project, dir=out)
    return [*images, *compared, page]


def _default_out(run_dirs: Sequence[str]) -> str:
    """``report/`` in the run's folder, or in the common folder of several runs."""
    common = os.path.commonpath([os.path.abspath(d) for d in run_dirs]) if len(run_dirs) > 1 else run_dirs[0]
    return os.path.join(common, REPORT_DIR)


def inspect_ticket(path: str) -> str:
    """A ticket's densities (global and per layer, with shapes and counts), what an export of it would store, and its
    metadata, as text; for a binary ticket (biprop's, bit-packed), also its size against the dense float32 model."""
    from lt_lightning.supermask.binary import read_ticket

    ticket, binary = read_ticket(path)
    masks = ticket.masks
    width = max((len(n) for n in masks), default=0)
    lines = [f"ticket: {path}",
             f"density: {masks.density():.6g} ({masks.kept():,} of {masks.numel():,} prunable weights kept,"
             f" {100 * masks.density():.3g}%)",
             *([f"{binary.summary()}; file {os.path.getsize(path):,} bytes"] if binary is not None else []),
             _export_saving(ticket), "layers:"]
    for name, mask in masks.items():
        kept = int(mask.sum())
        shape = "x".join(str(s) for s in mask.shape)
        lines.append(f"  {name:<{width}}  {shape:>12}  density {kept / max(mask.numel(), 1):.4g}"
                     f"  ({kept:,} of {mask.numel():,})")
    lines += ["metadata:", json.dumps(ticket.metadata, indent=2, default=str)]
    return "\n".join(lines)


def _export_saving(ticket: Ticket) -> str:
    """What `ticket export` would store, in a line."""
    sizes = export.stored_bytes(ticket)
    dense = sizes.pop("dense")
    stored = ", ".join(f"{b:,} with {d} values ({dense / b:.2f}x smaller)" for d, b in sizes.items())
    return (f"an export stores (tensor bytes): {stored}, vs {dense:,} as dense float32; whether it runs faster,"
            " `lt-lightning ticket export` measures")


def compare_tickets(path_a: str, path_b: str) -> str:
    """Two tickets' masks side by side, as text: per layer and over all prunable weights, each one's density, the
    IoU of their kept weights and the IoU two random masks of those densities would have."""
    a, b = load_ticket(path_a), load_ticket(path_b)
    similarity = mask_similarity(a.masks, b.masks)
    width = max(len("all prunable weights"), *(len(n) for n in similarity["layers"]))
    row = "{:<" + str(width) + "}  {:>9}  {:>9}  {:>6}  {:>10}"
    lines = [f"A: {path_a}", f"B: {path_b}", row.format("layer", "density A", "density B", "IoU", "random IoU")]
    for name, layer in similarity["layers"].items():
        lines.append(row.format(name, f"{layer['density_a']:.4g}", f"{layer['density_b']:.4g}", f"{layer['iou']:.4f}",
                                f"{layer['random_iou']:.4f}"))
    lines.append(row.format("all prunable weights", f"{a.masks.density():.4g}", f"{b.masks.density():.4g}",
                            f"{similarity['iou']:.4f}", f"{similarity['random_iou']:.4f}"))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lt-lightning", description="Lottery-ticket experiments with Lightning.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _LIGHTNING:
        commands.add_parser(name, add_help=False, help=f"LightningCLI {name}; see `lt-lightning {name} --help`")
    runs = commands.add_parser(
        "report", help="plots and a Markdown summary of a run, or of several seeds of one, from their histories",
        description="Write PNG plots and report.md from RUN_DIR/" + HISTORY_FILE + " and the results of its branches;"
                    " with several RUN_DIRs (seeds of one experiment), the mean, 95% interval and verdicts per"
                    " density over them. SupermaskCallback runs: final accuracy against density per method, mean"
                    " and 95% interval over the runs that share a method and density.")
    runs.add_argument("run_dir", metavar="RUN_DIR", nargs="+", help=f"a run's log dir, holding {HISTORY_FILE} (or,"
                      " for SupermaskCallback runs, tickets/supermask.pt and a CSVLogger's metrics.csv)")
    runs.add_argument("--out", help=f"folder for the report (default: RUN_DIR/{REPORT_DIR}, or {REPORT_DIR}/ in the"
                      " RUN_DIRs' common folder)")
    runs.add_argument("--overwrite", action="store_true", help="replace a report.md already in --out (default:"
                      " refuse)")
    runs.add_argument("--wandb-project", metavar="PROJECT", help="also log the verdicts table and plot to a new W&B"
                      " run of PROJECT (WANDB_MODE=offline works)")
    runs.add_argument("--eps", type=float, default=0.002, help="matching margin from dense, in the metric's units"
                      " (default: 0.002, i.e. 0.2 points of accuracy)")
    runs.add_argument("--metric", help="the accuracy plotted against weights remaining (default: val_acc-like)")
    whole = commands.add_parser(
        "experiment", help="the classic figure in one command: IMP per seed, controls of its tickets, the report",
        description="Run the IMP config once per --seeds into OUT/seed_S/, then train --controls of every chosen"
                    " round's ticket of every run (seeded 1000 + S), then write the report across the seeds into"
                    " OUT/report/. Trainings done are not run again: run it again to go on after a failure or a kill"
                    " (a killed training resumes from its last checkpoint). One command at a time per OUT.")
    whole.add_argument("--config", required=True, help="a LightningCLI config with an IMPCallback, as for `fit`")
    whole.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="S",
                       help="seed_everything of each IMP run (default: 0 1 2)")
    whole.add_argument("--controls", nargs="+", default=list(branch.DEFAULT_CONTROLS), metavar="NAME",
                       help=f"controls of each ticket (default: {' '.join(branch.DEFAULT_CONTROLS)})")
    whole.add_argument("--rounds", nargs="+", type=int, metavar="R", help="rounds whose tickets get controls"
                       " (default: every pruned round)")
    whole.add_argument("--out", help="the experiment's folder (default: <trainer.default_root_dir or lt_logs>/<the"
                       " config file's name>)")
    whole.add_argument("--metric", help="the report's accuracy (default: val_acc-like)")
    whole.add_argument("--eps", type=float, default=0.002, help="the report's matching margin (default: 0.002)")
    whole.add_argument("--dry-run", action="store_true", help="write the trainings' configs and print their command"
                       " lines, stage by stage, instead of running them")
    _launcher_arguments(whole)
    branches = commands.add_parser(
        "branch", help="train controls of an IMP run's tickets, each a plain `lt-lightning fit`",
        description="Train controls of the tickets of the IMP run in RUN_DIR with its Trainer, model and data"
                    " config, one `lt-lightning fit` per round x control x seed, into RUN_DIR/branches/. Trainings"
                    " already done are skipped.")
    branches.add_argument("run_dir", metavar="RUN_DIR", help=f"the IMP run's log dir: {HISTORY_FILE}, config.yaml")
    branches.add_argument("--control", nargs="+", default=list(branch.DEFAULT_CONTROLS),
                          metavar="NAME", help=f"controls to train (default: {' '.join(branch.DEFAULT_CONTROLS)})")
    branches.add_argument("--rounds", nargs="+", type=int, metavar="R", help="rounds whose tickets to use"
                          " (default: every pruned round)")
    branches.add_argument("--seeds", nargs="+", type=_seed, metavar="S",
                          help="seeds (seed_everything and the control's; default: the run's seed + 1)")
    branches.add_argument("--dry-run", action="store_true", help="write each training's config and print its"
                          " command line (one per line, for a job array or sweep) instead of running it")
    _launcher_arguments(branches)
    unstable = commands.add_parser(
        "instability", help="train two copies from one state with different data orders; their error barrier",
        description="Instability analysis (Frankle et al. 2020): from the state at step K (trained from the config's"
                    " initialization, or read from --from), train two copies to the end of one training with"
                    " different seeds, and evaluate the linear path between them with the module's validation."
                    " Writes OUT/instability.json and OUT/report/.")
    _lmc_arguments(unstable)
    unstable.add_argument("--from", dest="start", metavar="CKPT_OR_TICKET", help="the start state: a Lightning"
                          " checkpoint (its RewindCallback snapshot, or its own state), a ticket, or a state file")
    unstable.add_argument("--step", help="the start step (default 0; '500it', '2ep'); with --from, the state's step")
    unstable.add_argument("--ticket", help="a ticket whose masks the copies keep (a sparse network's instability)")
    search = commands.add_parser(
        "rewind-search", help="instability of the dense network at several rewind steps; do IMP tickets match?",
        description="The rewind-point search of 'Stabilizing the Lottery Ticket Hypothesis': the instability at each"
                    " of --steps, and with IMP runs (--imp-runs, or --imp to run them) whether the ticket rewound to"
                    " each step matches dense. Writes OUT/rewind_search.json and OUT/report/.")
    _lmc_arguments(search)
    search.add_argument("--steps", nargs="+", required=True, metavar="K", help="rewind steps ('500it', '2ep', 100)")
    search.add_argument("--imp-runs", nargs="+", metavar="RUN_DIR", help="finished IMP runs, one per step, in order")
    search.add_argument("--imp", action="store_true", help="run the config's IMPCallback once per step")
    search.add_argument("--density", type=float, help="the ticket density compared with dense (default: the last"
                        " round's)")
    search.add_argument("--eps", type=float, help="matching margin from dense error (default: 0.002)")
    tickets = commands.add_parser("ticket", help="ticket files").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    tickets.add_parser("inspect", help="print a ticket's densities, what an export would store, and metadata"
                       ).add_argument("file", metavar="FILE")
    out = tickets.add_parser(
        "export", help="a ticket as a plain module, sparse where measured faster; print what it saves",
        description="Export TICKET (a ticket of the module built from --config or --module) to --out: each prunable"
                    " layer sparse where measured faster than dense at every --batch-sizes (or --force-sparse),"
                    " weights packed; prints sizes and latencies against dense. Load it with"
                    " lt_lightning.export.load_exported.")
    out.add_argument("file", metavar="TICKET")
    built = out.add_mutually_exclusive_group(required=True)
    built.add_argument("--config", help="a LightningCLI config that builds the ticket's model (a run's config.yaml)")
    built.add_argument("--module", metavar="CLASS_PATH", help="an nn.Module class built with its defaults")
    out.add_argument("--out", required=True, metavar="FILE", help="the exported file (must not exist)")
    out.add_argument("--dtype", choices=list(export.DTYPES), default="float32", help="stored values")
    out.add_argument("--batch-sizes", nargs="+", type=int, default=list(export.BATCH_SIZES), metavar="B",
                     help="batch sizes measured (default: %(default)s)")
    out.add_argument("--force-sparse", action="store_true", help="swap every layer with a sparse form, even slower")
    similar = tickets.add_parser("compare", help="IoU of two tickets' masks, per layer and overall",
                                 description="How alike two tickets' masks are: per layer and over all prunable"
                                             " weights, the IoU of the kept weights, next to the IoU two random"
                                             " masks of the same densities would have.")
    similar.add_argument("files", metavar="FILE", nargs=2, help="two ticket files of one architecture")
    return parser


def _export_module(config: str | None, class_path: str | None) -> torch.nn.Module:
    """The module a ticket is exported from: the model of a LightningCLI config (a run's ``config.yaml``), built
    without running anything, or a class built with its defaults."""
    if config is not None:
        with open(config) as f:
            spec = yaml.safe_load(f)
        if not isinstance(spec, dict) or "model" not in spec:
            raise ValueError(f"--config {config!r} has no model: section (a LightningCLI config, e.g. a run's"
                             " config.yaml).")
        # Only the model: a run's saved config also holds fit's own arguments (ckpt_path), its data and callbacks.
        args = {"model": spec["model"], "trainer": {"logger": False, "enable_checkpointing": False}}
        with warnings.catch_warnings(), quiet_lightning():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            return LTLightningCLI(pl.LightningModule, None, subclass_mode_model=True, args=args, run=False,
                                  parser_kwargs={"prog": "lt-lightning", "exit_on_error": False}).model
    cls = config_class({"class_path": class_path})
    if cls is None or not issubclass(cls, torch.nn.Module):
        raise ValueError(f"--module {class_path!r} is not an importable nn.Module class (e.g."
                         " lt_lightning.zoo.LeNet300100).")
    return cls()


def export_command(args: argparse.Namespace) -> str:
    """``ticket export``: export the ticket, write it atomically to ``--out`` (never over an existing file), and
    return the report's table (it ends with the statement)."""
    from lt_lightning.supermask.binary import read_ticket

    if os.path.exists(args.out):
        raise ValueError(f"--out {args.out!r} exists: give a new path (an export is never written over a file).")
    ticket, binary = read_ticket(args.file)
    module = _export_module(args.config, args.module)
    exported, report = export.export_ticket(module, ticket, submodule=export.lightning_network(module),
                                            batch_sizes=args.batch_sizes, dtype=args.dtype,
                                            force_sparse=args.force_sparse, binary=binary)
    export.save_exported(exported, report, args.out)
    return f"{report.table()}\nwritten: {args.out}"  # the table ends with the statement


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lt-lightning`` console script; returns the exit status."""
    args_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _LIGHTNING:
        try:
            lightning_cli(args_given)
        except ConfigError as err:
            where = ", ".join(_config_files(argv)) or "the command line"
            # One line: a job's log shows its last line as the job's error.
            print(f"lt-lightning {argv[0]}: error in {where}: {err} (see `lt-lightning {argv[0]} --help` for the"
                  " accepted options)", file=sys.stderr)
            return 2
        return 0
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            for path in report(args.run_dir, args.out, args.metric, args.eps, args.wandb_project, args.overwrite):
                print(path)
        elif args.command == "experiment":
            _experiment(args)
        elif args.command == "branch":
            _branch(args)
        elif args.command in ("instability", "rewind-search"):
            _lmc(args)
        elif args.action == "compare":
            print(compare_tickets(*args.files))
        elif args.action == "export":
            print(export_command(args))
        else:
            print(inspect_ticket(args.file))
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        print(f"lt-lightning {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
