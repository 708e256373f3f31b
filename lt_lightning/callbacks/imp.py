"""IMPCallback: iterative magnitude pruning with rewinding, every round inside one ``trainer.fit``.

Timeline of a fit with one training of ``L`` optimizer steps (the configured ``max_epochs``/``max_steps``), rewind
step ``k`` and ``R`` pruning rounds: round 0 trains dense for ``L`` steps; each later round trains the ``L - k`` steps
that round 0 ran after ``k``. The fit is extended to ``L + R * (L - k)`` steps. A round ends at the start of the first
batch after its last step, so the validation and checkpoints that Lightning runs after that step still see the round's
trained network; then the callback records the round, prunes, resets and starts the next round.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from typing_extensions import override

from lt_lightning.callbacks._trainer import TrainingLength, log_metrics, run_dir, schedulers, steps_per_epoch
from lt_lightning.callbacks.masking import MaskingCallback, prunable_names
from lt_lightning.callbacks.rewind import RewindCallback
from lt_lightning.masks import DEFAULT_TYPES, Masks
from lt_lightning.pruning import ScoreContext, check_regex, geometric, prune, rounds_to_reach
from lt_lightning.pruning.allocation import check_allocation
from lt_lightning.pruning.schedule import check_fraction
from lt_lightning.pruning.scores import check_score
from lt_lightning.reporting import round_scalars
from lt_lightning.reporting.progress import print_round_summary, show_round
from lt_lightning.reporting.wandb import log_round_to_wandb
from lt_lightning.ticket import Ticket

Reset = Literal["rewind", "lr_rewind", "finetune"]
_RESETS = ("rewind", "lr_rewind", "finetune")
# LRSchedulerConfig.frequency this large means "never step": how "finetune" keeps the final learning rate.
_NEVER = 2**62


class IMPCallback(MaskingCallback):
    """Iterative magnitude pruning (Frankle & Carbin 2019) with rewinding (Frankle et al. 2020) in one fit.

    After each round, ``pruning_fraction`` of the remaining prunable weights are pruned, so the density after ``r``
    rounds is ``(1 - pruning_fraction) ** r``; then the network is reset by ``reset``:

    - ``"rewind"``: weights, optimizer and LR schedulers back to the :class:`RewindCallback` snapshot (to the
      initialization when the Trainer has no RewindCallback);
    - ``"lr_rewind"``: keep the trained weights and optimizer buffers, rewind learning rates and schedulers
      (Renda et al. 2020);
    - ``"finetune"``: keep everything and go on at the final learning rate (schedulers stop stepping).

    Args:
        rounds: pruning rounds after the dense round 0 (the fit trains ``rounds + 1`` times).
        pruning_fraction: fraction of the remaining prunable weights pruned per round, in (0, 1).
        target_density: stop after the first round whose density is at most this, in (0, 1).
        reset: how each round starts, see above.
        score: pruning score by name (``lt_lightning.pruning.SCORES``), ``"magnitude"`` for IMP.
        allocation: ``"global"`` (one threshold over all layers) or ``"layerwise"`` (same density per layer), or any
            name in ``lt_lightning.pruning.ALLOCATIONS``.
        layer_fractions: per-layer pruning fractions that override ``pruning_fraction``, as ``{regex: fraction}``
            matched against parameter names (e.g. ``{"out\\.weight": 0.1}``, Frankle & Carbin's output layer).
            Those layers are pruned on their own; the others by ``allocation``.
        keep_dense: regex of prunable parameters never pruned (e.g. ``"out\\.weight"``); the fraction applies to the
            others.
        allow_layer_collapse: allow a layer to lose all its weights; by default each keeps its best weight, the
            others giving it up, with a ``LayerCollapseWarning`` naming the layers.
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`);
            by default the weights of Linear and ConvNd layers.
        monitor, mode: the logged metric whose best value marks a round's early-stopping iteration.
        dirpath: folder for ``imp_history.json`` and ``tickets/``; default: the trainer's log dir.
        save_tickets: write each round's ticket (masks, rewind weights, metadata).
        seed: seed for random scores.
    """

    def __init__(
        self,
        rounds: int | None = 5,
        pruning_fraction: float = 0.2,
        target_density: float | None = None,
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
        mode: Literal["min", "max"] = "min",
        dirpath: str | None = None,
        save_tickets: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if rounds is None and target_density is None:
            raise ValueError("IMPCallback needs rounds or target_density to know when to stop; both are None.")
        if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1):
            raise ValueError(f"rounds={rounds!r} is not allowed; expected an int >= 1.")
        check_fraction("pruning_fraction", pruning_fraction)
        if target_density is not None:
            check_fraction("target_density", target_density)
        if reset not in _RESETS:
            raise ValueError(f"reset={reset!r} is not allowed; expected one of {list(_RESETS)}.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; expected 'min' or 'max'.")
        check_score(score)
        if score in ("snip", "grasp", "synflow"):
            raise ValueError(f"score={score!r} scores the network on data or inputs, which IMPCallback does not give"
                             f" its scores: prune at initialization with PruneAtInitCallback(method={score!r}).")
        check_allocation(allocation)
        if keep_dense is not None:
            check_regex("keep_dense", keep_dense)
        self.layer_fractions = dict(layer_fractions or {})
        for pattern, fraction in self.layer_fractions.items():
            check_regex("layer_fractions key", pattern)
            check_fraction(f"layer_fractions[{pattern!r}]", fraction)
        self.rounds = rounds
        self.pruning_fraction = pruning_fraction
        self.target_density = target_density
        self.reset = reset
        self.score = score
        self.allocation = allocation
        self.keep_dense, self.allow_layer_collapse = keep_dense, allow_layer_collapse
        self.include, self.exclude, self.types = include, exclude, tuple(types)
        self.monitor, self.mode = monitor, mode
        self.dirpath = dirpath
        self.save_tickets = save_tickets
        self.seed = seed
        self.num_rounds = min(
            r for r in (rounds, target_density and rounds_to_reach(pruning_fraction, target_density)) if r
        )

        self.history: list[dict[str, Any]] = []
        self.round = 0
        self._layer_fraction: dict[str, float] = {}
        self._rewind: RewindCallback | None = None
        self._length: TrainingLength | None = None
        self._train_steps = 0  # L, one training
        self._rewind_step = 0  # k
        self._run_dir = ""
        self._best: dict[str, float] = {}
        self._best_step: int | None = None
        self._seen: dict[str, float] = {}  # the round's latest logged scalars, kept across a resume
        self._overlap: float | None = None  # IoU of this round's kept weights with the previous round's
        self._round_started = 0.0
        self._resumed_time = 0.0  # wall time a resumed round had spent before the checkpoint
        self._resumed_length: tuple[int, int] | None = None

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(rounds=self.rounds, pruning_fraction=self.pruning_fraction)

    # ------------------------------------------------------------------ setup: everything that can fail, fails here
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        names, self._layer_fraction = prunable_names(pl_module, self.include, self.exclude, self.types,
                                                     self.layer_fractions, "layer_fractions key", self.keep_dense)
        if self.masks is None:
            self.masks = Masks.dense(pl_module, names)
        self._length = TrainingLength.read(trainer)
        rewinds = [c for c in trainer.callbacks if isinstance(c, RewindCallback)]
        if len(rewinds) > 1:
            raise ValueError(f"IMPCallback found {len(rewinds)} RewindCallbacks; give the Trainer at most one.")
        if rewinds:
            self._rewind = rewinds[0]
        else:
            if self.reset != "finetune":
                rank_zero_info("lt-lightning: no RewindCallback in the Trainer; IMP rewinds to the initialization.")
            self._rewind = RewindCallback(step=0)
            self._rewind.setup(trainer, pl_module, stage)
            trainer.callbacks.append(self._rewind)  # so its snapshot is captured and checkpointed like the user's
        self._run_dir = run_dir(trainer, self.dirpath)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # configure_optimizers has seen one training's length; lift the limits before Lightning checks a resumed
        # checkpoint against them. on_train_start sets the exact end once steps per epoch are known.
        trainer.fit_loop.max_epochs = -1
        trainer.fit_loop.epoch_loop.max_steps = -1

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._length is not None and self._rewind is not None and self.masks is not None
        if len(trainer.optimizers) != 1:
            raise ValueError(f"IMPCallback supports one optimizer; configure_optimizers returned {len(trainer.optimizers)}.")
        per_epoch = steps_per_epoch(trainer)
        self._train_steps = self._length.steps(per_epoch)
        self._rewind_step = self._rewind.resolve(trainer)
        if self._resumed_length not in (None, (self._train_steps, self._rewind_step)):
            raise ValueError(
                f"the checkpoint's IMP run had one training of {self._resumed_length[0]} steps rewound to step"
                f" {self._resumed_length[1]}; this Trainer gives {self._train_steps} and {self._rewind_step}"
                f" ({self._length}): resume with the Trainer and callbacks of the original run."
            )
        trainer.fit_loop.epoch_loop.max_steps = self._round_end(self.num_rounds)
        if per_epoch != math.inf:  # the epochs the extended fit spans, for progress bars; max_steps ends it
            trainer.fit_loop.max_epochs = math.ceil(self._round_end(self.num_rounds) / per_epoch)
        self._validate_at_round_ends(trainer)
        if self.reset == "finetune" and self.round > 0:
            self._freeze_schedulers(trainer)
        super().on_train_start(trainer, pl_module)
        self._start_round(trainer, elapsed=self._resumed_time)
        self._resumed_time = 0.0

    def _validate_at_round_ends(self, trainer: pl.Trainer) -> None:
        """Make Lightning also validate after each round's last step, so that every round's final metrics are
        measured at its end even when it ends mid-epoch. Lightning has no public switch for this: its epoch loop's
        ``_should_check_val_fx`` is wrapped for this fit only (and left alone, with a warning, if it is missing)."""
        epoch_loop = trainer.fit_loop.epoch_loop
        should_check = getattr(epoch_loop, "_should_check_val_fx", None)
        if should_check is None:
            rank_zero_warn("lt-lightning: cannot validate at round ends with this Lightning version; a round's final"
                           " validation metrics are those of the last validation before its end.")
            return

        def or_at_round_end(*args: Any, **kwargs: Any) -> bool:
            return should_check(*args, **kwargs) or trainer.global_step == self._round_end(self.round)

        epoch_loop._should_check_val_fx = or_at_round_end

    # ------------------------------------------------------------------ per batch: one integer comparison
    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.round < self.num_rounds and trainer.global_step == self._round_end(self.round):
            self._next_round(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._seen.update(_scalars(trainer.callback_metrics))
        for name, value in _scalars(trainer.callback_metrics).items():
            lower = self.mode == "min" if name == self.monitor else _lower_is_better(name)
            previous = self._best.get(name)
            if previous is None or (value < previous if lower else value > previous):
                self._best[name] = value
                if name == self.monitor:
                    self._best_step = self._virtual_step(trainer.global_step)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(self.history) == self.round and trainer.global_step >= self._round_end(self.round):
            self._finish_round(trainer, pl_module)
        trainer.fit_loop.epoch_loop.__dict__.pop("_should_check_val_fx", None)
        super().on_train_end(trainer, pl_module)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        trainer.fit_loop.epoch_loop.__dict__.pop("_should_check_val_fx", None)
        super().on_exception(trainer, pl_module, exception)

    # ------------------------------------------------------------------ rounds
    def _round_end(self, round_: int) -> int:
        return self._train_steps + round_ * (self._train_steps - self._rewind_step)

    def _virtual_step(self, global_step: int) -> int:
        """The step of one training that ``global_step`` stands for in the current round."""
        if self.round == 0:
            return global_step
        return self._rewind_step + global_step - self._round_end(self.round - 1)

    def _next_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.masks is not None and self._rewind is not None
        self._finish_round(trainer, pl_module)
        snapshot = self._rewind.snapshot
        if snapshot is None:
            raise RuntimeError("IMPCallback reached a round's end without a rewind snapshot; was training resumed from"
                               " a checkpoint written by an older run without one?")
        masks = None
        if trainer.is_global_zero:
            masks = self._prune(pl_module, self.round + 1)
        if self.reset == "rewind":
            snapshot.restore_model(pl_module)
            snapshot.restore_optimizers(trainer.optimizers)
            snapshot.restore_schedulers(schedulers(trainer))
        elif self.reset == "lr_rewind":
            snapshot.restore_optimizers(trainer.optimizers, keep_buffers=True)
            snapshot.restore_schedulers(schedulers(trainer))
        else:
            self._freeze_schedulers(trainer)
        self.round += 1
        previous = self.masks
        self._overlap = self.set_masks(trainer, pl_module, masks).overlap(previous)
        self._best, self._best_step, self._seen = {}, None, {}
        self._start_round(trainer)

    def _start_round(self, trainer: pl.Trainer, elapsed: float = 0.0) -> None:
        """Start the round's clock (``elapsed``: time it ran before a resume) and show the round and its density."""
        assert self.masks is not None
        self._round_started = time.perf_counter() - elapsed
        log_metrics(trainer, {"imp/round": float(self.round)})  # first: W&B syncs it into the density rows
        self.log_densities(trainer, "imp")
        show_round(trainer, self.round, self.num_rounds, self.masks.density())

    def _prune(self, pl_module: pl.LightningModule, round_: int) -> Masks:
        assert self.masks is not None
        generator = torch.Generator().manual_seed(self.seed + round_)
        context = ScoreContext(pl_module, self.masks, generator=generator)
        layer_density = {n: geometric(f, round_) for n, f in self._layer_fraction.items()}
        return prune(context, geometric(self.pruning_fraction, round_), score=self.score, allocation=self.allocation,
                     layer_density=layer_density, keep_dense=self.keep_dense,
                     allow_layer_collapse=self.allow_layer_collapse)

    def _finish_round(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.masks is not None and self._rewind is not None
        # callback_metrics starts empty in a resumed process: what the round logged before the checkpoint is in _seen.
        final = {**self._seen, **_scalars(trainer.callback_metrics)}
        record: dict[str, Any] = {
            "round": self.round,
            "density": self.masks.density(),
            "layer_density": self.masks.layer_densities(),
            "start_step": 0 if self.round == 0 else self._rewind_step,
            "train_steps": self._train_steps if self.round == 0 else self._train_steps - self._rewind_step,
            "final": final,
            "best": dict(self._best),
            "monitor": self.monitor,
            "best_step": self._best_step,
            "mask_overlap": self._overlap,
            "distance_from_rewind": self._distance_from_rewind(pl_module),
            "wall_time_s": time.perf_counter() - self._round_started,
            "ticket": None,
        }
        if self.save_tickets and self._rewind.snapshot is not None:
            record["ticket"] = os.path.join(self._run_dir, "tickets", f"round_{self.round:02d}.pt")
        # Metrics logged without sync_dist differ between ranks: every rank keeps rank zero's record.
        record = trainer.strategy.broadcast(record, src=0)
        self.history.append(record)
        self._write(record)
        log_metrics(trainer, round_scalars(record))
        log_round_to_wandb(trainer, self.history)
        print_round_summary(record, self.num_rounds)

    def _distance_from_rewind(self, pl_module: pl.LightningModule) -> float | None:
        """Relative L2 distance of the trained prunable weights from their rewind values, ``|w - w_k| / |w_k|``."""
        assert self.masks is not None and self._rewind is not None
        if self._rewind.snapshot is None:
            return None
        params = dict(pl_module.named_parameters())
        diff = norm = 0.0
        for name, mask in self.masks.items():
            start = self._rewind.snapshot.model[name].to(params[name].device) * mask.to(params[name].device)
            diff += float((params[name].detach() - start).float().pow(2).sum())
            norm += float(start.float().pow(2).sum())
        return (diff / norm) ** 0.5 if norm else None

    @rank_zero_only
    def _write(self, record: dict[str, Any]) -> None:
        assert self.masks is not None and self._rewind is not None and self._rewind.snapshot is not None
        os.makedirs(self._run_dir, exist_ok=True)
        with open(os.path.join(self._run_dir, "imp_history.json"), "w") as f:
            json.dump(self.history, f, indent=2)
        if record["ticket"] is not None:
            weights = {k: v.clone() for k, v in self._rewind.snapshot.model.items()}
            for name, mask in self.masks.items():
                weights[name].mul_(mask.to(weights[name].dtype).cpu())
            metadata = {k: v for k, v in record.items() if k != "ticket"}
            metadata.update(rewind_step=self._rewind_step, pruning_fraction=self.pruning_fraction, reset=self.reset,
                            score=self.score, allocation=self.allocation)
            Ticket(self.masks.to("cpu"), weights, metadata).save(record["ticket"])

    @staticmethod
    def _freeze_schedulers(trainer: pl.Trainer) -> None:
        for config in trainer.lr_scheduler_configs:
            config.frequency = _NEVER

    # ------------------------------------------------------------------ checkpoints
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(round=self.round, history=self.history, best=self._best, best_step=self._best_step, seen=self._seen,
                     overlap=self._overlap,
                     train_steps=self._train_steps, rewind_step=self._rewind_step,
                     round_time=time.perf_counter() - self._round_started)
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.round = state_dict["round"]
        self.history = list(state_dict["history"])
        self._best = dict(state_dict["best"])
        self._best_step = state_dict["best_step"]
        self._seen = dict(state_dict["seen"])
        self._overlap = state_dict["overlap"]
        self._resumed_time = state_dict["round_time"]
        self._resumed_length = (state_dict["train_steps"], state_dict["rewind_step"])


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor) or v.numel() == 1}


def _lower_is_better(name: str) -> bool:
    """The rule for a metric's best value: names with 'loss' or 'err' are minimised, all others maximised."""
    return bool(re.search(r"loss|err", name, re.IGNORECASE))
