"""IMPCallback: iterative magnitude pruning with rewinding, every round inside one ``trainer.fit``.

One training is ``L`` optimizer steps (the configured ``max_epochs``/``max_steps``). Round 0 trains dense for ``L``
steps; each later round rewinds to step ``k`` and trains the ``L - k`` steps that round 0 ran after ``k`` (fewer if a
callback stops it early). Each round ends its epoch, so a round's epochs line up with one training's: epoch-level
metrics, epoch-interval schedulers and epoch-end validation happen where they did in round 0 (a round rewound to a
step mid-epoch first trains the rest of that epoch). The round's record is made at the start of the next epoch,
after Lightning's validation, epoch-end hooks and checkpoints have seen the round's trained network; then the
callback prunes, resets and starts the next round. The core decides what (:mod:`lt_lightning.timeline`,
:mod:`lt_lightning.records`, :mod:`lt_lightning.pruning`); this callback decides when.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lt_lightning.analysis.lmc import cosine_similarity, l2_distance
from lt_lightning.callbacks import _trainer as lt_trainer
from lt_lightning.callbacks._trainer import TrainingLength, log_metrics, run_dir, schedulers, steps_per_epoch
from lt_lightning.callbacks.base import BaseMaskingCallback, announce_prunable, on_rank_zero
from lt_lightning.callbacks.rewind import RewindCallback
from lt_lightning.masks import DEFAULT_TYPES, Masks, named_parameters, plain_state_dict
from lt_lightning.pruning import ScoreContext, geometric
from lt_lightning.pruning.schedule import SCHEDULES, check_schedule
from lt_lightning.pruning.scores import SCORES, check_score
from lt_lightning.pruning.spec import PruningSpec, rounds_to_target
from lt_lightning.records import HISTORY_FILE, MetricTracker, Mode, RoundRecord, history_run, write_history
from lt_lightning.reports import round_reporters
from lt_lightning.state import relative_distance
from lt_lightning.ticket import Ticket
from lt_lightning.timeline import RoundTimeline
from lt_lightning.validation import check_bool, check_fraction, check_int

Reset = Literal["rewind", "lr_rewind", "finetune"]
_RESETS = ("rewind", "lr_rewind", "finetune")
#: Beside a run's tickets: the unpruned weights of the rewind point, as a dense ticket.
REWIND_POINT_FILE = "rewind_point.pt"
# Arguments a resumed fit must share with the checkpoint's run: the masks and rounds so far were made by them.
_SAME_ON_RESUME = ("pruning_fraction", "schedule", "reset", "score", "allocation", "layer_fractions", "keep_dense",
                   "allow_layer_collapse", "include", "exclude", "types", "seed")
# What a checkpoint written before an argument existed was run with.
_BEFORE_ARGUMENT = {"schedule": "geometric"}


class IMPCallback(BaseMaskingCallback):
    """Iterative magnitude pruning (Frankle & Carbin 2019) with rewinding (Frankle et al. 2020) in one fit.

    After each round, ``pruning_fraction`` of the remaining prunable weights are pruned, so the density after ``r``
    rounds is ``(1 - pruning_fraction) ** r`` (with the default ``schedule="geometric"``); then the network is reset
    by ``reset``:

    - ``"rewind"``: weights, optimizer and LR schedulers back to the :class:`RewindCallback` snapshot (to the
      initialization when the Trainer has no RewindCallback);
    - ``"lr_rewind"``: keep the trained weights and optimizer buffers, rewind learning rates and schedulers
      (Renda et al. 2020);
    - ``"finetune"``: keep everything and go on at the final learning rate (schedulers stop stepping).

    A callback that stops training (``EarlyStopping``, anything setting ``trainer.should_stop``) ends the *round*:
    the record says where (``stopped_step``), and EarlyStopping starts afresh in the next round.

    Args:
        rounds: pruning rounds after the dense round 0 (the fit trains ``rounds + 1`` times).
        pruning_fraction: fraction of the remaining prunable weights pruned per round, in (0, 1).
        target_density: stop after the first round whose density is at most this, in (0, 1).
        schedule: the path of the density over the rounds, by name (``lt_lightning.pruning.SCHEDULES``): the last
            round ends at the density that ``pruning_fraction`` gives it, ``(1 - pruning_fraction) ** R`` after
            ``R`` rounds (per layer with ``layer_fractions``); ``"geometric"`` prunes ``pruning_fraction`` of the
            remaining weights every round, ``"cubic"`` prunes most in the first rounds, ``"linear"`` the same share
            of the weights every round.
        reset: how each round starts, see above.
        score: pruning score by name (``lt_lightning.pruning.SCORES``), ``"magnitude"`` for IMP.
        allocation: ``"global"`` (one threshold over all layers) or ``"layerwise"`` (same density per layer), or any
            name in ``lt_lightning.pruning.ALLOCATIONS``.
        layer_fractions: per-layer pruning fractions that override ``pruning_fraction``, as ``{regex: fraction}``
            matched against parameter names (e.g. ``{"out\\.weight": 0.1}``, Frankle & Carbin's output layer).
        keep_dense: regex of prunable parameters never pruned; the fraction applies to the others.
        allow_layer_collapse: allow a layer to lose all its weights; by default each keeps its best weight.
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`).
        monitor, mode: the metric whose best value marks a round's early-stopping iteration (``best_step``), and its
            direction.
        modes: directions of other metrics, ``{name: "min" | "max"}``; the rest are minimised when their name holds
            "loss" or "err" and maximised otherwise.
        dirpath: folder for ``imp_history.json`` and ``tickets/``; default: the trainer's log dir.
        save_tickets: write each round's ticket (masks, rewind weights, metadata).
        save_trained: also write each round's trained network, masked, as ``tickets/trained_NN.pt`` (for
            measurements after the fit, e.g. the error barrier to the trained dense network).
        same_basin: measure, at each round's end, the L2 distance and cosine similarity of the round's trained
            prunable weights to the trained dense network (round 0) and to the previous round (Evci et al.'s
            "same basin" question), in the record's ``basin``; keeps those two networks' prunable weights on CPU
            and in checkpoints.
        seed: seed for random scores.
    """

    def __init__(
        self,
        rounds: int | None = 5,
        pruning_fraction: float = 0.2,
        target_density: float | None = None,
        schedule: str = "geometric",
        reset: Reset = "rewind",
        score: str = "magnitude",
        allocation: str = "global",
        layer_fractions: dict[str, float] | None = None,
        keep_dense: str | None = None,
        allow_layer_collapse: bool = False,
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        monitor: str = "val_loss",
        mode: Mode = "min",
        modes: dict[str, Mode] | None = None,
        dirpath: str | None = None,
        save_tickets: bool = True,
        save_trained: bool = False,
        same_basin: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if rounds is None and target_density is None:
            raise ValueError("IMPCallback needs rounds or target_density to know when to stop; both are None.")
        if rounds is not None:
            check_int("rounds", rounds, minimum=1)
        check_fraction("pruning_fraction", pruning_fraction)
        if target_density is not None:
            check_fraction("target_density", target_density)
        if reset not in _RESETS:
            raise ValueError(f"reset={reset!r} is not allowed; expected one of {list(_RESETS)}.")
        check_schedule(schedule)
        check_score(score)
        if SCORES.needs(score):  # declared when the score was registered
            raise ValueError(f"score={score!r} scores the network on data or inputs, which IMPCallback does not give"
                             f" its scores: prune at initialization with PruneAtInitCallback(method={score!r})"
                             f" (the score is registered as needing {sorted(SCORES.needs(score))}).")
        if dirpath is not None and os.path.isfile(dirpath):
            raise ValueError(f"dirpath={dirpath!r} is a file; expected a folder for imp_history.json and tickets/.")
        self.spec = PruningSpec(score=score, allocation=allocation, layer_fractions=layer_fractions or {},
                                keep_dense=keep_dense, allow_layer_collapse=allow_layer_collapse, include=include,
                                exclude=exclude, types=types, seed=seed)
        self.tracker = MetricTracker(monitor, mode, modes)  # checks the modes
        self.rounds = rounds
        self.pruning_fraction = pruning_fraction
        self.target_density = target_density
        self.schedule = schedule
        self.reset = reset
        self.monitor, self.mode = monitor, mode
        self.dirpath = dirpath
        self.save_tickets = save_tickets
        for name, value in (("save_tickets", save_tickets), ("save_trained", save_trained), ("same_basin", same_basin)):
            check_bool(name, value)
        self.save_trained = save_trained
        self.same_basin = same_basin
        self.num_rounds = rounds or 0  # set from target_density once the prunable layers are known
        self._fresh()

    def _fresh(self) -> None:
        """The state of an experiment that has not started."""
        self.masks = None
        self.history: list[RoundRecord] = []
        self.round = 0
        self.tracker.reset()
        self.timeline: RoundTimeline | None = None
        self._run_id = uuid.uuid4().hex
        self._layer_fraction: dict[str, float] = {}
        self._rewind: RewindCallback | None = None
        self._length: TrainingLength | None = None
        self._run_dir = ""
        self._overlap: float | None = None
        self._score_notes: dict[str, Any] = {}  # the layers the last pruning's scores could not rank (rank zero)
        self._stopped = False  # a callback stopped the current round
        self._round_started = 0.0
        self._resumed: dict[str, Any] | None = None  # the checkpoint's state, checked once the module is known
        self._early_stopping: list[tuple[EarlyStopping, dict[str, Any]]] = []
        self._per_epoch = float("inf")
        self._step_at_batch_start = -1
        self._boundary = 0  # global step where the current trainer epoch must end
        self._names: list[str] = []
        self._ends: dict[str, dict[str, torch.Tensor]] = {}  # trained prunable weights: "dense", "previous"

    @property
    def history(self) -> list[RoundRecord]:
        """One record per finished round (also in ``imp_history.json``)."""
        self._adopt_spawned_results()
        return self._history

    @history.setter
    def history(self, history: list[RoundRecord]) -> None:
        self._history = history

    def _config(self) -> dict[str, Any]:
        return {"pruning_fraction": self.pruning_fraction, "schedule": self.schedule, "reset": self.reset, "score": self.spec.score,
                "allocation": self.spec.allocation, "layer_fractions": dict(self.spec.layer_fractions),
                "keep_dense": self.spec.keep_dense, "allow_layer_collapse": self.spec.allow_layer_collapse,
                "include": self.spec.include, "exclude": self.spec.exclude, "types": list(self.spec.types),
                "seed": self.spec.seed, "rounds": self.rounds, "target_density": self.target_density}

    # ------------------------------------------------------------------ before training: everything that can fail
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._fresh()  # a second fit is a new experiment; a resumed one gets its state from the checkpoint next
        self._length = TrainingLength.read(trainer)
        rewinds = [c for c in lt_trainer.callbacks_of(trainer) if isinstance(c, RewindCallback)]
        if len(rewinds) > 1:
            raise ValueError(f"IMPCallback found {len(rewinds)} RewindCallbacks; give the Trainer at most one.")
        if rewinds:
            self._rewind = rewinds[0]
        else:
            if self.reset != "finetune":
                rank_zero_info("lt-lightning: no RewindCallback in the Trainer; IMP rewinds to the initialization.")
            self._rewind = RewindCallback(step=0)
            self._rewind.setup(trainer, pl_module, stage)
            lt_trainer.callbacks_of(trainer).append(self._rewind)  # so its snapshot is captured and checkpointed like the user's
        lt_trainer.check_no_time_limit(trainer, "IMPCallback")
        self._early_stopping = [(c, copy.deepcopy(c.state_dict())) for c in lt_trainer.callbacks_of(trainer)
                                if isinstance(c, EarlyStopping)]
        self._run_dir = run_dir(trainer, self.dirpath)
        if os.path.isfile(self._run_dir):
            raise ValueError(f"dirpath={self._run_dir!r} is a file; expected a folder for {HISTORY_FILE} and tickets/.")

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        states = checkpoint.get("callbacks", {})
        if self.state_key in states or any(isinstance(k, str) and k.startswith("IMPCallback{") for k in states):
            return
        raise ValueError("the checkpoint holds no IMPCallback state: it was not written by an IMP run, and resuming"
                         " from it would start the experiment over from its weights as if they were dense round 0."
                         " To start IMP from those weights, load them into the module and fit without ckpt_path.")

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # configure_optimizers has seen one training's length; lift the limits before Lightning checks a resumed
        # checkpoint against them. on_train_start sets the exact end once steps per epoch are known.
        lt_trainer.set_fit_length(trainer, max_steps=-1, max_epochs=-1)
        super().on_fit_start(trainer, pl_module)

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        names, by_pattern = self.spec.resolve(pl_module)
        self._layer_fraction = by_pattern
        self._names = names
        announce_prunable(pl_module, names, self.spec.types)
        if self.target_density is not None:
            params = named_parameters(pl_module)
            needed = rounds_to_target({n: params[n].numel() for n in names}, self.pruning_fraction,
                                      self.target_density, self._layer_fraction, self.spec.dense_names(names))
            self.num_rounds = min(needed, self.rounds) if self.rounds else needed
        else:
            self.num_rounds = self.rounds or 0
        self._check_collapse_guard(pl_module)
        if self._resumed is not None:
            self._check_resume()
        self._check_run_dir(trainer)

    def _check_collapse_guard(self, pl_module: pl.LightningModule) -> None:
        """The layer-collapse guard keeps one weight in each layer: a last round keeping fewer weights than there
        are layers would fail there, after all the training before it."""
        if self.spec.allow_layer_collapse or not self.num_rounds:
            return
        params = named_parameters(pl_module)
        dense = self.spec.dense_names(self._names)
        pruned = [n for n in self._names if n not in self._layer_fraction and n not in dense]
        total = sum(params[n].numel() for n in pruned)
        if not pruned or round(self._density(self.pruning_fraction, self.num_rounds) * total) >= len(pruned):
            return
        fits = max((r for r in range(self.num_rounds) if round(geometric(self.pruning_fraction, r) * total)
                    >= len(pruned)), default=0)
        raise ValueError(f"rounds={self.num_rounds} with pruning_fraction={self.pruning_fraction} ends at density"
                         f" {geometric(self.pruning_fraction, self.num_rounds):.3g}, keeping"
                         f" {round(geometric(self.pruning_fraction, self.num_rounds) * total)} of {total:,} weights"
                         f" in {len(pruned)} layers: fewer than the one weight per layer the layer-collapse guard"
                         " keeps, so the last round would fail after the training before it. Use at most"
                         f" {fits} rounds (or a higher target_density), a smaller pruning_fraction, or"
                         " allow_layer_collapse=True.")

    def _check_resume(self) -> None:
        assert self._resumed is not None
        saved = self._resumed["config"]  # empty for 0.1 checkpoints, which did not keep it
        saved = {**_BEFORE_ARGUMENT, **saved} if saved else saved
        changed = [f"{k}: {saved.get(k)!r} in the checkpoint, {v!r} now" for k, v in self._config().items()
                   if saved and k in _SAME_ON_RESUME and saved.get(k) != v]
        if changed:
            raise ValueError("IMPCallback cannot resume this checkpoint with other pruning arguments: "
                             + "; ".join(changed) + ". Resume with the original arguments (rounds and target_density"
                             " may change to extend or shorten the experiment).")
        done = len(self.history) - 1
        if self.num_rounds < max(self.round, done):
            raise ValueError(f"the checkpoint's experiment is at round {max(self.round, done)}, past the"
                             f" {self.num_rounds} rounds that rounds={self.rounds}, target_density={self.target_density}"
                             " give now: raise rounds or lower target_density to continue it.")

    def _check_run_dir(self, trainer: pl.Trainer) -> None:
        """Never write over another run's history or tickets: a folder's history belongs to the run that made it."""
        path = os.path.join(self._run_dir, HISTORY_FILE)
        owner = None
        if os.path.isfile(path):
            try:
                owner = history_run(path)
            except ValueError:
                owner = "unknown"
        elif os.path.isdir(os.path.join(self._run_dir, "tickets")) and os.listdir(os.path.join(self._run_dir, "tickets")):
            owner = "unknown"
        owner = trainer.strategy.broadcast(owner, src=0)
        if owner is not None and owner != self._run_id:
            raise ValueError(f"{self._run_dir!r} already holds the history or tickets of another IMP run; this run"
                             " would overwrite them. Give this run its own dirpath (or logger version), or resume"
                             " that run from one of its checkpoints.")

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._length is not None and self._rewind is not None
        if len(trainer.optimizers) != 1:
            raise ValueError(f"IMPCallback supports one optimizer; configure_optimizers returned {len(trainer.optimizers)}.")
        self._per_epoch = steps_per_epoch(trainer)
        train_steps = self._length.steps(self._per_epoch)
        rewind_step = self._rewind.resolve(trainer)
        for config in trainer.lr_scheduler_configs:
            if config.frequency != 1:
                raise ValueError(f"IMPCallback replays LR schedules round by round, but a scheduler has"
                                 f" frequency={config.frequency} (interval={config.interval!r}), counted in the fit's"
                                 " epochs or batches, which the rounds do not share: use frequency=1.")
        if self._resumed is not None:
            saved = self._resumed["timeline"]
            if (saved["train_steps"], saved["rewind_step"]) != (train_steps, rewind_step):
                raise ValueError(
                    f"the checkpoint's IMP run had one training of {saved['train_steps']} steps rewound to step"
                    f" {saved['rewind_step']}; this Trainer gives {train_steps} and {rewind_step} ({self._length}):"
                    " resume with the Trainer and callbacks of the original run."
                )
            self.timeline = RoundTimeline(train_steps, rewind_step, self.num_rounds, list(saved["starts"]))
        else:
            self.timeline = RoundTimeline(train_steps, rewind_step, self.num_rounds)
        if self.reset == "finetune" and self.round > 0:
            lt_trainer.freeze_schedulers(trainer)
        self._set_length(trainer)
        if not lt_trainer.validate_also_when(trainer, lambda: self._validate_now(trainer)):
            rank_zero_warn("lt-lightning: cannot validate at round ends with this Lightning version; a round's final"
                           " validation metrics are those of the last validation before its end.")
        lt_trainer.end_epoch_when(pl_module, lambda batch_idx: self._end_epoch_now(trainer, batch_idx))
        lt_trainer.intercept_stop_requests(trainer, lambda: self._on_stop_request(trainer))
        super().on_train_start(trainer, pl_module)
        # Lightning calls on_train_epoch_start only for epochs it starts afresh, not for one it resumes mid-way.
        self._boundary = self._next_boundary(trainer)
        elapsed = self._resumed.get("round_time", 0.0) if self._resumed is not None else 0.0
        self._resumed = None
        self._start_round(trainer, elapsed)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks:
        return Masks.dense(pl_module, self._names)

    def _set_length(self, trainer: pl.Trainer) -> None:
        assert self.timeline is not None
        epochs = -1
        if self._per_epoch != float("inf"):  # the epochs the fit spans, for progress bars; max_steps ends it
            epochs = trainer.current_epoch + self.timeline.epochs_left(trainer.global_step, int(self._per_epoch))
        lt_trainer.set_fit_length(trainer, max_steps=self.timeline.total_steps(), max_epochs=epochs)

    # ------------------------------------------------------------------ when rounds end
    def _round_over(self, trainer: pl.Trainer) -> bool:
        assert self.timeline is not None
        return self._stopped or trainer.global_step >= self.timeline.end(self.round)

    def _next_boundary(self, trainer: pl.Trainer) -> int:
        """The global step of the next place this trainer epoch must end: the round's end, or where one training's
        epoch ends (a round rewound to a step mid-epoch first trains the rest of that epoch). Computed once an
        epoch, so that the per-batch checks are one comparison."""
        assert self.timeline is not None
        end = self.timeline.end(self.round)
        if self._per_epoch == float("inf"):
            return end
        per_epoch = int(self._per_epoch)
        virtual = self.timeline.virtual_step(trainer.global_step)
        return min(end, trainer.global_step + per_epoch - virtual % per_epoch)

    def _validate_now(self, trainer: pl.Trainer) -> bool:
        """After an optimizer step: validate at the round's end, and where one training's epoch ends inside a
        trainer epoch (a round rewound mid-epoch), as round 0 validated there."""
        assert self.timeline is not None
        step = trainer.global_step
        if step == self._step_at_batch_start or (step < self._boundary and not self._stopped):
            return False  # accumulating (no step taken), or before the boundary: the common case, decided here
        if self._round_over(trainer):
            return True
        every = trainer.check_val_every_n_epoch
        if every is None or step != self._boundary or lt_trainer.at_last_batch(trainer):
            return False
        return (self.timeline.virtual_step(step) // int(self._per_epoch)) % every == 0

    def _end_epoch_now(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        """At a batch start: end the trainer's epoch where the round ended or where one training's epoch ended."""
        return batch_idx > 0 and (trainer.global_step >= self._boundary
                                  or (self._stopped and self.round < self.num_rounds))

    def _on_stop_request(self, trainer: pl.Trainer) -> None:
        """A stop request ends the round, not the experiment (unless it is the last round)."""
        if trainer.should_stop:
            if self.round < self.num_rounds:
                trainer.should_stop = False
            if not self._stopped:
                self._stopped = True
                rank_zero_info(f"lt-lightning: training was stopped at global step {trainer.global_step}: round"
                               f" {self.round} ends there; the next round starts at the next epoch.")

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lt_trainer.release_step_schedulers(trainer)
        if self.round < self.num_rounds and self._round_over(trainer):
            self._next_round(trainer, pl_module)
        self._boundary = self._next_boundary(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.timeline is None:
            return
        self.tracker.observe(_scalars(trainer.callback_metrics), self.timeline.virtual_step(trainer.global_step))

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.timeline is not None
        lt_trainer.release_loops(trainer, pl_module)
        if len(self.history) == self.round:
            self._finish_round(trainer, pl_module)
        super().on_train_end(trainer, pl_module)
        finished = self.round == self.num_rounds and (self._stopped or trainer.global_step >= self.timeline.end(self.round))
        if not finished:
            raise RuntimeError(
                f"the fit ended at global step {trainer.global_step}, in round {self.round} of {self.num_rounds},"
                f" before the experiment's end (step {self.timeline.total_steps()}): something other than IMPCallback"
                " limited the fit (max_time, a KeyboardInterrupt handler, min/max_epochs set after setup?). The"
                f" history holds the {len(self.history)} rounds recorded; resume from a checkpoint to go on."
            )

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        lt_trainer.release_loops(trainer, pl_module)
        super().on_exception(trainer, pl_module, exception)

    # ------------------------------------------------------------------ rounds
    def _next_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.masks is not None and self._rewind is not None and self.timeline is not None
        if len(self.history) == self.round:  # not recorded yet (a resumed fit may have recorded it)
            self._finish_round(trainer, pl_module)
        snapshot = self._rewind.snapshot
        if snapshot is None:
            raise RuntimeError("IMPCallback reached a round's end without a rewind snapshot; was training resumed from"
                               " a checkpoint written by an older run without one?")
        masks = on_rank_zero(trainer, type(self).__name__, lambda: self._prune(pl_module, self.round + 1))
        if self.reset == "rewind":
            snapshot.restore_model(pl_module)
            snapshot.restore_optimizers(trainer.optimizers)
            snapshot.restore_schedulers(schedulers(trainer))
        elif self.reset == "lr_rewind":
            snapshot.restore_optimizers(trainer.optimizers, keep_buffers=True)
            snapshot.restore_schedulers(schedulers(trainer))
        else:
            lt_trainer.freeze_schedulers(trainer)
        self.round += 1
        self.timeline.start_round(self.round, trainer.global_step)
        previous = self.masks
        self._overlap = self.set_masks(trainer, pl_module, masks).overlap(previous)
        self.tracker.reset()
        self._stopped = False
        lt_trainer.clear_callback_metrics(trainer)
        for callback, initial in self._early_stopping:  # each round is a training of its own
            callback.load_state_dict(copy.deepcopy(initial))
        self._set_length(trainer)
        self._start_round(trainer)

    def _start_round(self, trainer: pl.Trainer, elapsed: float = 0.0) -> None:
        """Start the round's clock (``elapsed``: time it ran before a resume) and show the round and its density."""
        assert self.masks is not None
        self._round_started = time.perf_counter() - elapsed
        log_metrics(trainer, {"imp/round": float(self.round)})  # first: W&B syncs it into the density rows
        self.log_densities(trainer, "imp")
        for reporter in round_reporters():
            reporter.round_started(trainer, self.round, self.num_rounds, self.masks.density())

    def _prune(self, pl_module: pl.LightningModule, round_: int) -> Masks:
        assert self.masks is not None
        generator = torch.Generator().manual_seed(self.spec.seed + round_)
        context = ScoreContext(pl_module, self.masks, generator=generator)
        layer_density = {n: self._density(f, round_) for n, f in self._layer_fraction.items()}
        self._score_notes = {}
        return self.spec.prune(context, self._density(self.pruning_fraction, round_), layer_density,
                               self._score_notes)

    def _density(self, fraction: float, round_: int) -> float:
        """The density after ``round_`` rounds on the schedule's path to where ``fraction`` a round ends the last."""
        return SCHEDULES[self.schedule](round_ / self.num_rounds, 1.0, geometric(fraction, self.num_rounds))

    def _finish_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.masks is not None and self._rewind is not None and self.timeline is not None
        stopped_step = self.timeline.virtual_step(trainer.global_step)
        # Everything the round logged: callback metrics were cleared when it started (epoch-level values included).
        self.tracker.observe(_scalars(trainer.callback_metrics), stopped_step)
        if self.round == 0 and self.monitor not in self.tracker.final:
            rank_zero_warn(f"lt-lightning: monitor={self.monitor!r} was never logged in round 0, so best_step stays"
                           f" empty; logged metrics: {sorted(self.tracker.final)}. Set IMPCallback(monitor=...).")
        tickets = os.path.join(self._run_dir, "tickets")
        record = RoundRecord(
            round=self.round,
            density=self.masks.density(),
            layer_density=self.masks.layer_densities(),
            start_step=self.timeline.first_step(self.round),
            train_steps=stopped_step - self.timeline.first_step(self.round),
            stopped_step=stopped_step,
            stopped_early=self._stopped,
            final=dict(self.tracker.final),
            best=dict(self.tracker.best),
            monitor=self.monitor,
            mode=self.tracker.mode(self.monitor),
            best_step=self.tracker.best_step,
            mask_overlap=self._overlap,
            distance_from_rewind=(relative_distance(pl_module, self._rewind.snapshot.model, self.masks)
                                  if self._rewind.snapshot is not None else None),
            wall_time_s=time.perf_counter() - self._round_started,
            ticket=(os.path.join(tickets, f"round_{self.round:02d}.pt")
                    if self.save_tickets and self._rewind.snapshot is not None else None),
            trained_ticket=os.path.join(tickets, f"trained_{self.round:02d}.pt") if self.save_trained else None,
            basin=self._basin(pl_module) if self.same_basin else None,
        )
        # Metrics logged without sync_dist differ between ranks: every rank keeps rank zero's record.
        record = trainer.strategy.broadcast(record, src=0)
        self.history.append(record)
        on_rank_zero(trainer, type(self).__name__, lambda: self._write(record, pl_module))
        for reporter in round_reporters():
            reporter.round_finished(trainer, self.history, self.num_rounds)

    def _basin(self, pl_module: pl.LightningModule) -> dict[str, float]:
        """Distances of the round's trained prunable weights to the trained dense network and the previous round."""
        params = named_parameters(pl_module)
        trained = {n: params[n].detach().to("cpu", copy=True) for n in self._names}
        self._ends.setdefault("dense", trained)
        basin = {}
        for label, other in (("dense", self._ends["dense"]), ("previous", self._ends.get("previous", trained))):
            basin[f"l2_to_{label}"] = l2_distance(trained, other)
            basin[f"cosine_to_{label}"] = cosine_similarity(trained, other)
        self._ends["previous"] = trained
        return basin

    def _write(self, record: RoundRecord, pl_module: pl.LightningModule) -> None:
        assert self.masks is not None and self._rewind is not None and self.timeline is not None
        write_history(os.path.join(self._run_dir, HISTORY_FILE), self.history, run=self._run_id)
        if record.trained_ticket is not None:
            Ticket.from_state(plain_state_dict(pl_module), self.masks, {"round": record.round, "trained": True,
                                                                    "run": self._run_id}).save(record.trained_ticket)
        if record.ticket is not None:
            assert self._rewind.snapshot is not None
            # The unpruned rewind weights, once per run: controls that re-draw masks (shuffle_masks) need the
            # weights that a ticket's pruned positions would have had.
            rewind_point = os.path.join(os.path.dirname(record.ticket), REWIND_POINT_FILE)
            if not os.path.isfile(rewind_point):
                Ticket.from_state(self._rewind.snapshot.model, self.masks.dense_like(),
                                  {"rewind_step": self.timeline.rewind_step, "run": self._run_id}).save(rewind_point)
            metadata = {k: v for k, v in record.to_dict().items() if k != "ticket"}
            metadata.update(rewind_step=self.timeline.rewind_step, pruning_fraction=self.pruning_fraction,
                            reset=self.reset, score=self.spec.score, allocation=self.spec.allocation, run=self._run_id,
                            rewind_point=REWIND_POINT_FILE, **self._score_notes)
            Ticket.from_state(self._rewind.snapshot.model, self.masks, metadata).save(record.ticket)

    # ------------------------------------------------------------------ checkpoints
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(round=self.round, history=[r.to_dict() for r in self.history], tracker=self.tracker.state_dict(),
                     overlap=self._overlap, stopped=self._stopped, run=self._run_id, config=self._config(),
                     timeline=self.timeline.state_dict() if self.timeline is not None else None, ends=self._ends,
                     round_time=time.perf_counter() - self._round_started, score_notes=self._score_notes)
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "timeline" not in state_dict:
            state_dict = _from_v01(state_dict)
        super().load_state_dict(state_dict)
        self.round = state_dict["round"]
        self.history = [RoundRecord.from_dict(r) for r in state_dict["history"]]
        self.tracker.load_state_dict(state_dict["tracker"])
        self._overlap = state_dict["overlap"]
        self._score_notes = dict(state_dict.get("score_notes", {}))
        self._stopped = state_dict["stopped"]
        self._run_id = state_dict["run"]
        self._ends = dict(state_dict.get("ends", {}))
        self._resumed = state_dict


def _from_v01(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint state written by lt-lightning 0.1 (rounds back to back, no early stops), in today's form."""
    steps, rewind, round_ = state["train_steps"], state["rewind_step"], state["round"]
    history = [{k: v for k, v in r.items() if k in RoundRecord.__dataclass_fields__} for r in state["history"]]
    return {**state, "history": history, "tracker": {"final": state["seen"], "best": state["best"],
                                                      "best_step": state["best_step"]},
            "stopped": False, "run": uuid.uuid4().hex, "config": {},
            "timeline": {"train_steps": steps, "rewind_step": rewind,
                         "starts": [0] + [steps + r * (steps - rewind) for r in range(round_)]}}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}
