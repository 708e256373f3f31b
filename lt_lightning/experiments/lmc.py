"""Linear mode connectivity in Lightning: evaluation through the module's own validation, the instability analysis
of Frankle et al. 2020 ("Linear Mode Connectivity and the Lottery Ticket Hypothesis") and the rewind-point search of
"Stabilizing the Lottery Ticket Hypothesis".

**Instability at step k**: a network is trained to step ``k`` (or a state at ``k`` is given); two *copies* train from
that state to the end of one training, alike in everything but their seed (data order, and every other draw from
the global RNG: dropout, augmentation); their *error barrier* (:func:`lt_lightning.analysis.error_barrier`: the
highest error on the straight line between them minus the mean of the ends' errors) is the instability, and the
network is *stable* at ``k`` when it is below ``threshold`` (2 points of error by default). A ticket's copies keep
its masks. :func:`instability` reads the same LightningCLI config as ``lt-lightning fit`` (``trainer``, ``model``,
``data``); every training is a plain ``lt-lightning fit --config FILE`` of it with the callbacks
``SnapshotCallback``, ``TrainFromCallback`` and ``DataOrderCallback``, a :class:`~lt_lightning.experiments.jobs.Job`
that any launcher runs (``launcher``; ``dry_run`` gives the commands), and a training whose output exists is not run
again.

**Rewind-point search** (:func:`rewind_search`): the instability of the dense network at each of a list of steps
(one training to the last step saves every start state), and, given IMP runs rewound to each step, whether their
tickets at a chosen density match the dense network; the earliest stable and the earliest matching step.

**Error rule**: a validation metric whose name has the word ``acc`` or ``accuracy`` (between ``_``, ``/``, ``.`` or
the ends of the name) also gets an error, ``accuracy_scale - value``, under the name with that word replaced by
``err`` or ``error`` (``val_acc`` -> ``val_err``, ``val/accuracy`` -> ``val/error``), unless the module logs that
name itself (:func:`error_metrics`).
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch.nn.modules.batchnorm import _BatchNorm

from lt_lightning.analysis.lmc import cosine_similarity, error_barrier, interpolate, l2_distance, loss_barrier
from lt_lightning.callbacks import (
    BaseMaskingCallback,
    IMPCallback,
    MaskingCallback,
    PruneAtInitCallback,
    RecordCallback,
    RewindCallback,
)
from lt_lightning.callbacks._trainer import TrainingLength
from lt_lightning.callbacks.data_order import DataOrderCallback
from lt_lightning.callbacks.snapshot import SnapshotCallback
from lt_lightning.callbacks.train_from import TrainFromCallback, check_state
from lt_lightning.experiments.configs import (
    BUILT,
    check_builds,
    config_callbacks,
    config_is,
    logger_below,
    logger_into,
    quiet_lightning,
)
from lt_lightning.experiments.jobs import Job, resumable, run_jobs, write_job
from lt_lightning.experiments.launchers import Launcher, make_launcher
from lt_lightning.experiments.results import InstabilityResult, SearchResult, SearchRow, write_analysis
from lt_lightning.files import atomic_write_text
from lt_lightning.layout import INSTABILITY_FILE, LOGS_DIR, SEARCH_FILE, RunLayout
from lt_lightning.masks import Masks
from lt_lightning.records import RoundRecord, load_history
from lt_lightning.reporting.lmc import log_instability, log_rewind_search
from lt_lightning.state import SNAPSHOT_FORMAT, Snapshot, load_snapshot, save_snapshot, snapshot_file
from lt_lightning.step import Step, StepLike
from lt_lightning.ticket import load_ticket

__all__ = [
    "check_validation",
    "error_metrics",
    "instability",
    "read_start",
    "rewind_search",
    "validation_evaluator",
]

_MAX_SEED = 2**32
_ACCURACY = re.compile(r"(?<![^/_.])(accuracy|acc)(?![^/_.])")
# Callbacks that run an experiment of their own, or write one file per fit: a copy gets its own in their place.
_REPLACED = (IMPCallback, RewindCallback, PruneAtInitCallback, RecordCallback, SnapshotCallback, TrainFromCallback,
             DataOrderCallback)
_BN_BATCHES = 10


# ---------------------------------------------------------------------------------------------- evaluation
def error_metrics(metrics: Mapping[str, float], accuracy_scale: float = 1.0) -> dict[str, float]:
    """``metrics`` as floats, with an error for every accuracy (the module docstring's rule); ``ValueError`` naming
    an accuracy outside ``[0, accuracy_scale]``.

    >>> error_metrics({"val_loss": 0.3, "val_acc": 0.75, "val/top5_accuracy": 0.5})
    {'val_loss': 0.3, 'val_acc': 0.75, 'val/top5_accuracy': 0.5, 'val_err': 0.25, 'val/top5_error': 0.5}
    >>> error_metrics({"val_acc": 97.5}, accuracy_scale=100)
    {'val_acc': 97.5, 'val_err': 2.5}
    """
    out = {str(k): float(v) for k, v in metrics.items()}
    for name, value in list(out.items()):
        error = _ACCURACY.sub(lambda m: "error" if m.group(1) == "accuracy" else "err", name, count=1)
        if error == name or error in metrics:
            continue
        if not 0.0 <= value <= accuracy_scale:
            raise ValueError(f"{name!r} = {value!r} is read as an accuracy in [0, {accuracy_scale:g}], and it is not:"
                             " pass accuracy_scale=100 for percent, or log the error under a name of its own.")
        out[error] = accuracy_scale - value
    return out


def check_validation(module: pl.LightningModule, datamodule: pl.LightningDataModule | None = None) -> None:
    """``ValueError`` naming the module (and datamodule) if it cannot be validated: no ``validation_step``, or no
    val loader (``val_dataloader()`` of the datamodule or of the module)."""
    if not isinstance(module, pl.LightningModule):
        raise ValueError(f"{type(module).__name__} is not a LightningModule: evaluation runs its validation_step.")
    if not is_overridden("validation_step", module):
        raise ValueError(f"{type(module).__name__} has no validation_step: linear mode connectivity evaluates each"
                         " point with the module's own validation; define validation_step (and log a metric).")
    if not (datamodule is not None and is_overridden("val_dataloader", datamodule)) and not is_overridden(
            "val_dataloader", module):
        where = f"neither {type(datamodule).__name__} nor {type(module).__name__}" if datamodule is not None else \
            f"{type(module).__name__} (and no datamodule)"
        raise ValueError(f"{where} defines val_dataloader(): there is no validation data to evaluate on.")


def validation_evaluator(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    datamodule: pl.LightningDataModule | None = None,
    *,
    accuracy_scale: float = 1.0,
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """``evaluate(module) -> dict[str, float]`` for :func:`~lt_lightning.analysis.interpolate`: one
    ``trainer.validate`` of the module on its val loader (the datamodule's or its own), whose logged metrics are
    returned with an error for every accuracy (:func:`error_metrics`). Several val loaders give Lightning's
    ``name/dataloader_idx_N`` keys. The trainer's loggers are detached meanwhile, so that the points do not go to
    them as validation metrics. On one device or under DDP (metrics logged with ``sync_dist=True`` or torchmetrics
    are reduced over ranks; Lightning's ``DistributedSampler`` repeats a few samples to even out the ranks).

    Checked now: the module has ``validation_step`` and a val loader, and the trainer validates
    (``limit_val_batches`` is not 0).
    """
    check_validation(module, datamodule)
    if trainer.limit_val_batches == 0:
        raise ValueError("the Trainer has limit_val_batches=0: it validates nothing, so there is nothing to evaluate.")

    def evaluate(net: torch.nn.Module) -> dict[str, float]:
        loggers = trainer.loggers
        trainer.loggers = []
        try:
            results = trainer.validate(net, datamodule=datamodule, verbose=False)
        finally:
            trainer.loggers = loggers
        merged: dict[str, float] = {}
        for result in results:
            merged.update(result)
        if not merged:
            raise ValueError(f"{type(net).__name__}'s validation logged no metric: log one in validation_step"
                             " (self.log('val_loss', ...)).")
        return error_metrics(merged, accuracy_scale)

    return evaluate


# ---------------------------------------------------------------------------------------------- configs and fits
def read_config(config: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A LightningCLI config (``trainer``, ``model``, ``data``, ``seed_everything``) from a YAML file or a mapping."""
    if isinstance(config, Mapping):
        loaded: Any = copy.deepcopy(dict(config))
        where = "the config"
    else:
        where = os.fspath(config)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"config {where!r} does not exist.")
        try:
            with open(where) as f:
                loaded = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f"{where!r} is not readable YAML ({err}).") from err
    if not isinstance(loaded, dict) or "model" not in loaded:
        raise ValueError(f"{where} has no 'model': expected a LightningCLI config (trainer, model, data), the YAML"
                         " that `lt-lightning fit --config` reads.")
    if loaded.get("trainer") is None:
        loaded["trainer"] = {}
    return loaded


def _source(config: str | os.PathLike | Mapping[str, Any]) -> str:
    """How errors name a config: its file, or "the config" for a mapping."""
    return "the config" if isinstance(config, Mapping) else repr(os.fspath(config))


def _fit_config(config: dict[str, Any], folder: str, name: str, callbacks: Sequence[dict[str, Any]],
                seed: int | None = None, keep_masking: bool = True) -> dict[str, Any]:
    """``config`` with the experiment callbacks (IMP, rewind, prune-at-init, records, ours) replaced by
    ``callbacks``, every output (logger, checkpoints) in ``folder``, and ``seed_everything`` = ``seed`` if given.
    A ``MaskingCallback`` (a ticket the config trains) stays when ``keep_masking``."""
    out = copy.deepcopy(config)
    if seed is not None:
        out["seed_everything"] = seed
    if "ckpt_path" in out:
        out["ckpt_path"] = None
    trainer = out["trainer"]
    kept = []
    for spec in config_callbacks(out):
        if config_is(spec, _REPLACED) or (config_is(spec, BaseMaskingCallback) and not (keep_masking and config_is(spec, MaskingCallback))):
            continue
        if config_is(spec, ModelCheckpoint) and (spec.get("init_args") or {}).get("dirpath"):
            spec = {**spec, "init_args": {**spec["init_args"], "dirpath": os.path.join(folder, "checkpoints")}}
        kept.append(spec)
    trainer["callbacks"] = kept + list(callbacks)
    trainer["default_root_dir"] = folder
    trainer["logger"] = logger_into(trainer.get("logger"), folder, name)
    return out


def _cli(cli: type[LightningCLI], args: list[str], run: bool) -> LightningCLI:
    kwargs: dict[str, Any] = {"save_config_kwargs": {"overwrite": True}} if run else {"save_config_callback": None}
    return cli(pl.LightningModule, None, subclass_mode_model=True, subclass_mode_data=True, args=args, run=run,
               parser_kwargs={"exit_on_error": False}, **kwargs)


def _plan(planned: Sequence[tuple[Job, dict[str, Any]]]) -> list[Job]:
    for job, config in planned:
        write_job(job, config)
    return [job for job, _ in planned]


# ---------------------------------------------------------------------------------------------- start states
@dataclass(frozen=True)
class Start:
    """A state to train copies from: the snapshot (``step`` = k), the ticket whose masks the copies keep (if any),
    and where it came from."""

    snapshot: Snapshot
    ticket: str | None
    source: str


def read_start(source: str | os.PathLike | Snapshot, step: int | None = None, ticket: str | None = None) -> Start:
    """The state at step k in ``source``:

    - a :class:`~lt_lightning.state.Snapshot`, or a state file (:func:`~lt_lightning.state.save_snapshot`);
    - a Lightning checkpoint: its ``RewindCallback`` snapshot if it has one (an IMP run's rewind point, with the
      optimizer state of step k), else the checkpoint's own state at its global step (a ``ModelCheckpoint`` of a
      plain fit). A checkpoint of an IMP run without a rewind snapshot is refused (its step counts rounds);
    - a ticket file (``tickets/round_NN.pt``, ``rewind_point.pt``): its weights and masks at its ``rewind_step``
      (weights only: the copies start with fresh optimizer states).

    Masks saved in a checkpoint (a masking callback's) are not read: give the ticket as ``ticket``.

    ``step``, when given, must be the state's step (it is required for a ticket that does not record one);
    ``ticket`` adds a ticket's masks to a dense state. ``ValueError`` naming the file otherwise.
    """
    if ticket is not None:
        load_ticket(ticket)  # a missing or foreign file fails here, naming it
        ticket = os.path.abspath(ticket)  # the copies' configs name it, wherever a launcher runs them
    if isinstance(source, Snapshot):
        return _checked_step(Start(source, ticket, "the given Snapshot"), step)
    path = os.path.abspath(os.fspath(source))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"start state {os.fspath(source)!r} does not exist.")
    data = torch.load(path, map_location="cpu", weights_only=False)
    kind = data.get("format") if isinstance(data, dict) else None
    if kind == SNAPSHOT_FORMAT:
        return _checked_step(Start(load_snapshot(path), ticket, path), step)
    if isinstance(kind, str) and kind.startswith("lt-lightning-ticket/"):
        if ticket is not None and ticket != path:
            raise ValueError(f"the start {path!r} is a ticket, with masks of its own; ticket={ticket!r} would give"
                             " others: pass the ticket as the start, or a dense state with ticket=.")
        loaded = load_ticket(path)
        recorded = loaded.metadata.get("rewind_step")
        if recorded is None and step is None:
            raise ValueError(f"the ticket {path!r} does not record its rewind_step: give the step its weights are"
                             " from (--step K).")
        k = int(recorded) if recorded is not None else int(step)  # type: ignore[arg-type]
        return _checked_step(Start(Snapshot(step=k, epoch=0, model=loaded.state_dict), path, path), step)
    if isinstance(data, dict) and "state_dict" in data and "global_step" in data:
        states = data.get("callbacks") or {}
        rewind = states.get("RewindCallback") or next(
            (v for k, v in states.items() if isinstance(k, str) and k.startswith("RewindCallback{")), None)
        if rewind and rewind.get("snapshot") is not None:
            snapshot = Snapshot.from_state_dict(rewind["snapshot"])
        elif any(isinstance(k, str) and k.startswith("IMPCallback") for k in states):
            raise ValueError(f"{path!r} is an IMP run's checkpoint without a RewindCallback snapshot: its weights are"
                             " a pruned round's, at a global step that counts rounds. Give a checkpoint of a run with"
                             " a RewindCallback, or the run's rewind_point.pt / ticket.")
        else:
            snapshot = Snapshot(step=int(data["global_step"]), epoch=int(data.get("epoch", 0)),
                                model=data["state_dict"], optimizers=list(data.get("optimizer_states") or []),
                                schedulers=list(data.get("lr_schedulers") or []))
        return _checked_step(Start(snapshot, ticket, path), step)
    raise ValueError(f"{path!r} is neither an lt-lightning state file, a ticket nor a Lightning checkpoint.")


def _iterations(step: StepLike | None) -> int | None:
    """A step given beside a start state, in optimizer steps (the state's own step is a count of them)."""
    if step is None:
        return None
    parsed = Step.parse(step)
    if parsed.epochs:
        raise ValueError(f"step={step!r} counts epochs; beside a start state give its step in optimizer steps.")
    return parsed.iterations


def _save_start(snapshot: Snapshot, path: str) -> None:
    """Write the start state of an analysis; an ``out`` folder holding another start state is refused, so that its
    finished copies are never taken for copies of this one. Every rank writes the same bytes (atomically), so that
    none reads the file before it exists."""
    if os.path.isfile(path):
        saved = load_snapshot(path)
        same = saved.step == snapshot.step and saved.model.keys() == snapshot.model.keys() and all(
            torch.equal(saved.model[k], torch.as_tensor(v).cpu()) for k, v in snapshot.model.items()
            if isinstance(v, torch.Tensor))
        if not same:
            raise ValueError(f"{os.path.dirname(os.path.dirname(path))!r} holds the analysis of another start state"
                             f" ({path}): give this analysis its own out folder.")
        return
    save_snapshot(snapshot, path)


def _checked_step(start: Start, step: int | None) -> Start:
    if step is not None and step != start.snapshot.step:
        raise ValueError(f"step={step} was given, but the state from {start.source} is at step {start.snapshot.step}.")
    return start


# ---------------------------------------------------------------------------------------------- checks
def _check_arguments(seeds: Sequence[int], points: int, threshold: float | None, key: str,
                     accuracy_scale: float, bn_batches: int | None) -> float:
    """Check the arguments every analysis shares before anything trains; return the threshold to use."""
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"points={points!r} must be an int >= 2 (the two endpoints at least).")
    seeds = list(seeds)
    if len(seeds) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"seeds={seeds!r}: the analysis trains two copies; give two different seeds.")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed {seed!r} is not allowed; seeds are integers in [0, 2**32).")
    if not isinstance(key, str) or not key:
        raise ValueError(f"key={key!r} is not allowed; expected the name of a validation metric (e.g. 'val_err').")
    if not (isinstance(accuracy_scale, (int, float)) and accuracy_scale > 0):
        raise ValueError(f"accuracy_scale={accuracy_scale!r} must be > 0 (1 for accuracies in [0, 1], 100 for %).")
    if bn_batches is not None and (isinstance(bn_batches, bool) or not isinstance(bn_batches, int) or bn_batches < 0):
        raise ValueError(f"bn_batches={bn_batches!r} must be None (the default) or an int >= 0.")
    threshold = 0.02 * accuracy_scale if threshold is None else threshold
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold={threshold!r} must be > 0 (in the units of {key!r}).")
    return float(threshold)


def _check_inside_training(config: dict[str, Any], steps: Iterable[StepLike]) -> None:
    """Refuse steps at or past ``trainer.max_steps`` now; steps in epochs, and configs limited by ``max_epochs``
    only, are checked when the first training starts (steps per epoch are known then), before any optimizer step."""
    max_steps = config["trainer"].get("max_steps")
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        return
    for value in steps:
        step = Step.parse(value)
        if not step.epochs and step.iterations >= max_steps:
            raise ValueError(f"step {str(step)!r} is not inside one training of max_steps={max_steps}; allowed: 0"
                             f" to {max_steps - 1}.")


# ---------------------------------------------------------------------------------------------- the analysis
class _Evaluation:
    """The module, data and Trainer that evaluate every point, built from the config with its logger in ``out``;
    ``probe`` is the module's evaluation as built, taken before any training to check ``key``."""

    def __init__(self, config: dict[str, Any], out: str, cli: type[LightningCLI], key: str,
                 accuracy_scale: float, name: str) -> None:
        # Only what builds the module, data and Trainer: a saved run config also holds the arguments of `fit` itself
        # (ckpt_path, weights_only), which a LightningCLI without a subcommand does not take.
        evaluation = {k: v for k, v in _fit_config(config, out, name, []).items() if k in BUILT}
        evaluation["trainer"].update(callbacks=[], enable_checkpointing=False, enable_progress_bar=False,
                                     enable_model_summary=False)
        path = os.path.join(out, "evaluation.yaml")
        atomic_write_text(path, yaml.safe_dump(evaluation, sort_keys=False))
        with warnings.catch_warnings(), quiet_lightning():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            built = _cli(cli, ["--config", path], run=False)
        self.module, self.datamodule, self.trainer = built.model, built.datamodule, built.trainer
        self.evaluate = validation_evaluator(self.trainer, self.module, self.datamodule,
                                             accuracy_scale=accuracy_scale)
        with quiet_lightning():
            self.probe = self.evaluate(self.module)
        if key not in self.probe:
            raise ValueError(f"key={key!r} is not among the metrics {type(self.module).__name__}'s validation gives:"
                             f" {sorted(self.probe)}.")

    def _train_loader(self) -> Any:
        owner: Any = self.module
        if self.datamodule is not None and is_overridden("train_dataloader", self.datamodule):
            self.datamodule.setup("fit")
            owner = self.datamodule
        return owner.train_dataloader()

    def train_batches(self, count: int) -> list[Any]:
        """The first ``count`` batches of the train loader (the same on every rank), for BatchNorm statistics."""
        with torch.random.fork_rng():
            torch.manual_seed(0)
            batches = list(islice(iter(self._train_loader()), count))
        return [move_data_to_device(b, self.module.device) for b in batches]

    def check_steps(self, steps: Iterable[StepLike]) -> None:
        """Refuse, before any training, steps at or past the end of one training as the Trainer will count it
        (``max_steps``, ``max_epochs`` times the train loader's steps per epoch). Left to the first training: an
        unsized loader, or several processes (a sampler splits the batches then)."""
        trainer = self.trainer
        if trainer.world_size > 1:
            return
        try:
            batches = len(self._train_loader())
        except TypeError:  # an iterable loader: steps per epoch are known once the training runs
            return
        limit = trainer.limit_train_batches
        batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
        per_epoch = math.ceil(batches / trainer.accumulate_grad_batches)
        length = TrainingLength(max_epochs=trainer.max_epochs, max_steps=trainer.max_steps)
        total = length.steps(per_epoch)
        for value in steps:
            step = Step.parse(value)
            if step.to_steps(per_epoch) >= total:
                raise ValueError(f"step {str(step)!r} is not inside one training: {total} steps ({length},"
                                 f" {per_epoch} steps an epoch); allowed: 0 to {total - 1}"
                                 f" ({str(step)!r} is step {step.to_steps(per_epoch)}).")

    def bn_batches(self, bn_batches: int | None) -> int:
        """How many training batches re-estimate BatchNorm statistics: ``bn_batches``, or by default 10 when the
        module has BatchNorm layers with running statistics and 0 otherwise."""
        if bn_batches is not None:
            return bn_batches
        return _BN_BATCHES if any(isinstance(m, _BatchNorm) and m.track_running_stats for m in self.module.modules()) \
            else 0

    def curve(self, state_a: Snapshot, state_b: Snapshot, points: int, masks: Masks | None,
              bn_batches: int) -> list[dict[str, float]]:
        batches = self.train_batches(bn_batches) if bn_batches else None
        with quiet_lightning():
            return interpolate(self.module, state_a.model, state_b.model, self.evaluate, points, masks=masks,
                               bn_batches=batches)


def _copies(config: dict[str, Any], start_file: str, ticket: str | None, seeds: Sequence[int], out: str
            ) -> list[tuple[Job, dict[str, Any]]]:
    planned = []
    for seed in seeds:
        folder = os.path.join(out, f"copy_seed{seed}")
        end = os.path.join(folder, "end.pt")
        callbacks = [{"class_path": "lt_lightning.callbacks.TrainFromCallback",
                      "init_args": {"state": start_file, "save_to": end}},
                     {"class_path": "lt_lightning.callbacks.DataOrderCallback", "init_args": {"seed": seed}}]
        if ticket is not None:
            callbacks.append({"class_path": "lt_lightning.MaskingCallback",
                              "init_args": {"ticket": ticket, "ticket_weights": False}})
        job = Job(f"copy seed {seed}", os.path.join(folder, "copy.yaml"), (end,))
        planned.append((job, _fit_config(config, folder, str(job), callbacks, seed=seed, keep_masking=ticket is None)))
    return planned


def _parent(config: dict[str, Any], steps: Sequence[StepLike], out: str) -> tuple[Job, dict[str, Any]]:
    """The training from the config's initialization that saves the states at ``steps`` in ``out/start``."""
    folder = os.path.join(out, "start")
    callbacks = [{"class_path": "lt_lightning.callbacks.SnapshotCallback",
                  "init_args": {"steps": [str(Step.parse(s)) for s in steps], "dirpath": folder}}]
    job = Job("training to the start state" + ("s" if len(steps) > 1 else ""), os.path.join(folder, "parent.yaml"),
              tuple(snapshot_file(folder, s) for s in steps))
    return job, _fit_config(config, folder, "parent", callbacks)


def _result(evaluation: _Evaluation, trainings: Sequence[Job], seeds: Sequence[int], points: int,
            masks: Masks | None, bn_batches: int | None, key: str, threshold: float, start: str,
            ticket: str | None, out: str) -> InstabilityResult:
    ends = [load_snapshot(t.outputs[0]) for t in trainings]
    bn_batches = evaluation.bn_batches(bn_batches)
    curve = evaluation.curve(ends[0], ends[1], points, masks, bn_batches)
    barrier = error_barrier(curve, key)
    loss_key = re.sub(r"err(or)?", "loss", key, count=1)
    names = [n for n, _ in evaluation.module.named_parameters()]
    k = load_snapshot(start).step if os.path.isfile(start) else None
    return InstabilityResult(
        step=k,
        train_steps=ends[0].step,
        seeds=list(seeds),
        key=key,
        threshold=threshold,
        barrier=barrier,
        stable=bool(barrier < threshold),
        loss_barrier=loss_barrier(curve, loss_key) if loss_key != key and loss_key in curve[0] else None,
        endpoints=[{k: v for k, v in p.items() if k != "alpha"} for p in (curve[0], curve[-1])],
        l2_distance=l2_distance(ends[0].model, ends[1].model, names),
        cosine_similarity=cosine_similarity(ends[0].model, ends[1].model, names),
        density=masks.density() if masks is not None else 1.0,
        start=start,
        ticket=ticket,
        points=points,
        bn_batches=bn_batches,
        curve=curve,
        out=out,
    )


def _dry_run(stages: Sequence[Sequence[Job]]) -> dict[str, Any]:
    """Every command not done, in order, and the stages of jobs not done (a stage needs the one before)."""
    todo = [[job for job in stage if not job.done] for stage in stages]
    return {"commands": [job.command for stage in todo for job in stage], "stages": [s for s in todo if s]}


def _write_json(path: str, result: InstabilityResult | SearchResult) -> None:
    if rank_zero_only.rank == 0:
        write_analysis(path, result)


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)


def instability(
    config: str | os.PathLike | Mapping[str, Any],
    start: str | os.PathLike | Snapshot | None = None,
    *,
    step: StepLike | None = None,
    ticket: str | None = None,
    seeds: Sequence[int] = (1, 2),
    points: int = 30,
    threshold: float | None = None,
    key: str = "val_err",
    accuracy_scale: float = 1.0,
    bn_batches: int | None = None,
    out: str | os.PathLike | None = None,
    cli: type[LightningCLI] = LightningCLI,
    launcher: Launcher | None = None,
    dry_run: bool = False,
    echo: Callable[[str], Any] = _print,
) -> InstabilityResult | dict[str, list[str]]:
    """The instability of the network of ``config`` at one step: train two copies from the state at step ``k`` to
    the end of one training with seeds ``seeds``, evaluate ``points`` points of the line between their end weights
    with the module's validation, and return the error barrier of ``key`` and the curve (written to
    ``OUT/instability.json`` and to the config's loggers, :func:`lt_lightning.reporting.lmc.log_instability`).

    The state at ``k``: ``start`` (see :func:`read_start`: a state file, a Lightning checkpoint, a ticket, a
    :class:`~lt_lightning.state.Snapshot`), or, without it, a training from the config's initialization to
    ``step`` (default 0, ``"500it"``, ``"2ep"``). ``ticket`` (a ticket file) makes the copies train its masks, kept by
    ``MaskingCallback``; a ticket given as ``start`` brings its own. ``threshold`` (default 2 points: 0.02 times
    ``accuracy_scale``) decides ``stable``. ``bn_batches``: BatchNorm statistics re-estimated at every point on that
    many training batches (default 10 when the module has BatchNorm, as interpolated statistics overstate the
    barrier: Jordan et al. 2022; 0 interpolates them). ``cli`` is the LightningCLI class that builds the
    evaluation; ``launcher`` runs the trainings (default ``local``: in this process, one after another).

    Files in ``out`` (default ``<default_root_dir or lt_logs>/instability/step_<k>``): ``start/`` (the start
    state, or the training to it), ``copy_seed<S>/`` (each copy's ``copy.yaml``, logs and ``end.pt``),
    ``instability.json``. A training whose output exists is not run again; ``dry_run`` writes every config and
    returns ``{"commands": [...], "stages": [[Job, ...], ...]}`` (the start training first; a stage's jobs need the
    stage before) without training or evaluating.

    Checked before any training, naming the value: the config, ``points``, ``seeds``, ``threshold``, ``key`` (among
    the metrics the module's validation gives), a module without validation, a state of another architecture or
    other parameter names, masks that do not fit, a step at or past the end of one training (``max_steps``, or
    ``max_epochs`` times the train loader's steps per epoch).
    """
    source = _source(config)
    config = read_config(config)
    threshold = _check_arguments(seeds, points, threshold, key, accuracy_scale, bn_batches)
    begin = read_start(start, _iterations(step), ticket) if start is not None else None
    if begin is None:
        if ticket is not None:
            load_ticket(ticket)
            ticket = os.path.abspath(ticket)
        label = str(Step.parse(0 if step is None else step))
    else:
        label = f"{begin.snapshot.step}it"
    ticket_file = begin.ticket if begin is not None else ticket
    _check_inside_training(config, [label])
    if out is None:
        root = config["trainer"].get("default_root_dir") or "lt_logs"
        name = f"step_{label}" + (f"_{os.path.splitext(os.path.basename(ticket_file))[0]}" if ticket_file else "")
        out = os.path.join(root, "instability", name)
    out = os.path.abspath(os.fspath(out))
    # A copy's config holds every callback the config keeps; its start state is only read once it trains.
    check_builds(_copies(config, snapshot_file(os.path.join(out, "start"), label), ticket_file, seeds[:1], out)[0][1],
                 source)
    evaluation = _Evaluation(config, out, cli, key, accuracy_scale, "instability")
    evaluation.check_steps([label])
    masks = load_ticket(ticket_file).masks if ticket_file is not None else None
    if masks is not None:
        masks.check(evaluation.module)
    planned = []
    if begin is None:
        planned.append(_parent(config, [label], out))
        start_file = planned[0][0].outputs[0]
    else:
        check_state(evaluation.module, begin.snapshot.model, begin.source)
        start_file = os.path.join(out, "start", "state.pt")
        _save_start(begin.snapshot, start_file)
    stages = [_plan(planned), _plan(_copies(config, start_file, ticket_file, seeds, out))]
    if dry_run:
        return _dry_run(stages)
    launcher = launcher or make_launcher("local")
    for stage in stages:
        run_jobs(stage, launcher, echo)
    result = _result(evaluation, stages[-1], seeds, points, masks, bn_batches, key, threshold, start_file,
                     ticket_file, out)
    _write_json(os.path.join(out, INSTABILITY_FILE), result)
    log_instability(evaluation.trainer, result)
    echo(f"instability at step {result['step']}: {key} barrier {barrier_text(result)} ({result['out']})")
    return result


def barrier_text(result: Mapping[str, Any]) -> str:
    """``0.0123 (stable: below 0.02)`` for a result of :func:`instability`."""
    verdict = "stable: below" if result["stable"] else "unstable: not below"
    return f"{result['barrier']:.4g} ({verdict} {result['threshold']:g})"


# ---------------------------------------------------------------------------------------------- rewind search
def rewind_search(
    config: str | os.PathLike | Mapping[str, Any],
    steps: Sequence[StepLike],
    *,
    seeds: Sequence[int] = (1, 2),
    points: int = 30,
    threshold: float | None = None,
    key: str = "val_err",
    accuracy_scale: float = 1.0,
    bn_batches: int | None = None,
    imp_runs: Sequence[str] | None = None,
    run_imp: bool = False,
    density: float | None = None,
    eps: float | None = None,
    out: str | os.PathLike | None = None,
    cli: type[LightningCLI] = LightningCLI,
    launcher: Launcher | None = None,
    dry_run: bool = False,
    echo: Callable[[str], Any] = _print,
) -> SearchResult | dict[str, list[str]]:
    """The experiment of "Stabilizing the Lottery Ticket Hypothesis": the dense network's instability at each of
    ``steps`` (one training from the config's initialization saves the state at every step; then two copies per
    step, as :func:`instability`), and, for IMP tickets rewound to each step, whether they match the dense network.

    Tickets: ``imp_runs`` (finished IMP run folders, one per step in the order of ``steps``, each holding
    ``imp_history.json``), or ``run_imp=True`` to run the config's own IMP (its ``IMPCallback``, with
    ``RewindCallback(step=k)`` and ``target_density=density`` when given) once per step into ``OUT/imp/step_<k>``
    (a folder that holds a history is taken as done). Per step the round nearest ``density`` (default: the last)
    is compared with its run's dense round 0 on ``key``: it *matches* when its error is at most dense's plus
    ``eps`` (default 0.002 times ``accuracy_scale``, 0.2 points).

    Returns (and writes to ``OUT/rewind_search.json``, with each step's analysis in ``OUT/step_<k>/``) one row per
    step: ``step``, ``barrier``, ``stable``, the copies' errors and, with tickets, ``ticket_density``,
    ``ticket_error``, ``dense_error``, ``matches``; and ``earliest_stable`` / ``earliest_matching`` (``None`` if
    none). The other arguments and the checks are :func:`instability`'s; ``steps`` must be distinct.
    """
    source = _source(config)
    config = read_config(config)
    threshold = _check_arguments(seeds, points, threshold, key, accuracy_scale, bn_batches)
    eps = 0.002 * accuracy_scale if eps is None else eps
    if not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps={eps!r} must be >= 0 (in the units of {key!r}).")
    labels = [str(Step.parse(s)) for s in steps]
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"steps={list(steps)!r}: give distinct rewind steps, at least one.")
    _check_inside_training(config, labels)
    if density is not None and not (isinstance(density, (int, float)) and 0 < density <= 1):
        raise ValueError(f"density={density!r} must be in (0, 1].")
    if imp_runs is not None and run_imp:
        raise ValueError("give imp_runs (finished IMP runs) or run_imp=True (run them), not both.")
    if imp_runs is not None:
        if len(imp_runs) != len(labels):
            raise ValueError(f"{len(imp_runs)} IMP runs for {len(labels)} steps: give one run per step, in order.")
        for run, label in zip(imp_runs, labels):
            load_history(run)  # a folder without a history fails here, naming it
            if not Step.parse(label).epochs:  # steps in epochs are known once the first training starts
                _ticket_verdict(run, Step.parse(label).iterations, key, accuracy_scale, density, eps)
    if run_imp and not any(config_is(spec, IMPCallback) for spec in config_callbacks(config)):
        raise ValueError("run_imp=True runs the config's IMPCallback once per step, and the config has none: add"
                         " one (lt_lightning.IMPCallback) or pass finished runs as imp_runs.")
    out = os.path.abspath(os.fspath(out if out is not None else os.path.join(
        config["trainer"].get("default_root_dir") or "lt_logs", "rewind_search")))
    check_builds(_parent(config, labels, out)[1], source)
    if run_imp:
        check_builds(_imp_training(config, labels[0], density, os.path.join(out, "imp", f"step_{labels[0]}"))[1],
                     source)
    evaluation = _Evaluation(config, out, cli, key, accuracy_scale, "rewind search")
    evaluation.check_steps(labels)
    planned = [_parent(config, labels, out)]
    per_step = {}
    for label in labels:
        per_step[label] = _copies(config, snapshot_file(os.path.join(out, "start"), label), None, seeds,
                                  os.path.join(out, f"step_{label}"))
    runs = list(imp_runs) if imp_runs is not None else []
    if run_imp:
        for label in labels:
            planned.append(_imp_training(config, label, density, os.path.join(out, "imp", f"step_{label}")))
            runs.append(os.path.dirname(planned[-1][0].outputs[0]))
    stages = [_plan(planned), _plan([c for label in labels for c in per_step[label]])]
    if dry_run:
        return _dry_run(stages)
    launcher = launcher or make_launcher("local")
    for stage in stages:
        run_jobs(stage, launcher, echo)
    rows = []
    for i, label in enumerate(labels):
        copies = [t for t, _ in per_step[label]]
        result = _result(evaluation, copies, seeds, points, None, bn_batches, key, threshold,
                         snapshot_file(os.path.join(out, "start"), label), None, os.path.join(out, f"step_{label}"))
        _write_json(os.path.join(result.out, INSTABILITY_FILE), result)
        log_instability(evaluation.trainer, result, prefix=f"lmc/step_{label}")
        verdict = _ticket_verdict(runs[i], result.step, key, accuracy_scale, density, eps) if runs else {}
        rows.append(SearchRow(step=result.step, barrier=result.barrier, stable=result.stable,
                              copy_errors=[e[key] for e in result.endpoints], out=result.out, **verdict))
        echo(f"step {label}: {key} barrier {barrier_text(result)}")
    search = SearchResult(
        key=key, threshold=threshold, eps=eps, density=density, seeds=list(seeds), points=points, rows=rows, out=out,
        earliest_stable=next((r.step for r in rows if r.stable), None),
        earliest_matching=next((r.step for r in rows if r.matches), None) if runs else None)
    _write_json(os.path.join(out, SEARCH_FILE), search)
    log_rewind_search(evaluation.trainer, search)
    return search


def _imp_training(config: dict[str, Any], label: str, density: float | None, folder: str
                  ) -> tuple[Job, dict[str, Any]]:
    callbacks = [{"class_path": "lt_lightning.RewindCallback", "init_args": {"step": label}}]
    for spec in config_callbacks(config):
        if config_is(spec, IMPCallback):
            args = {**(spec.get("init_args") or {}), "dirpath": folder}
            if density is not None:
                args["target_density"] = density
            callbacks.append({**spec, "init_args": args})
    run = RunLayout(folder)
    # The run's config.yaml beside its history and tickets, as `lt-lightning fit` leaves it: `branch` reads it.
    job = Job(f"IMP rewound to {label}", run.config_file, (run.history_file,), resumable=True,
              restart=(run.history_file, run.tickets))
    fit = _fit_config(config, folder, str(job), callbacks)
    fit["trainer"]["default_root_dir"] = os.path.join(folder, LOGS_DIR)
    fit["trainer"]["logger"] = logger_below(config["trainer"].get("logger"), folder, str(job))
    return job, resumable(fit, folder)


def _ticket_verdict(run: str, step: int, key: str, accuracy_scale: float, density: float | None, eps: float
                    ) -> dict[str, Any]:
    history = load_history(run)
    pruned = [r for r in history if r.round > 0]
    if not pruned:
        raise ValueError(f"the IMP run {run!r} has no pruned round: its history holds round 0 only.")
    if pruned[0].start_step != step:
        raise ValueError(f"the IMP run {run!r} rewinds to step {pruned[0].start_step}, but it is given for rewind"
                         f" step {step}.")
    chosen = pruned[-1] if density is None else min(pruned, key=lambda r: abs(math.log(r.density / density)))
    ticket_error, dense_error = (_final(record, run, key, accuracy_scale) for record in (chosen, history[0]))
    return {"ticket_round": chosen.round, "ticket_density": chosen.density, "ticket_error": ticket_error,
            "dense_error": dense_error, "matches": bool(ticket_error <= dense_error + eps), "imp_run": run}


def _final(record: RoundRecord, run: str, key: str, accuracy_scale: float) -> float:
    values = error_metrics(record.final, accuracy_scale)
    if key not in values:
        raise ValueError(f"key={key!r} is not among round {record.round}'s final metrics in {run!r}:"
                         f" {sorted(values)}.")
    return values[key]
