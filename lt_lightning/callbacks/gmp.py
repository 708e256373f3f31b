"""GMPCallback: gradual magnitude pruning (Zhu & Gupta 2017), dense to sparse within one training along a cubic
schedule (or another of ``lt_lightning.pruning.SCHEDULES``)."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lt_lightning.callbacks._trainer import steps_per_epoch
from lt_lightning.callbacks.updating import MaskUpdateCallback
from lt_lightning.dynamic import gmp_density, is_gmp_event
from lt_lightning.masks import DEFAULT_TYPES, Masks
from lt_lightning.pruning import ScoreContext
from lt_lightning.pruning.schedule import check_schedule
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.step import Step
from lt_lightning.validation import check_density, check_fraction, check_step


class GMPCallback(MaskUpdateCallback):
    """Gradual magnitude pruning (Zhu & Gupta 2017): from ``start`` to ``end``, every ``every`` optimizer steps (and at
    ``end``), prune the weights of smallest magnitude down to the density of the cubic schedule
    ``final + (initial - final) * (1 - (t - start) / (end - start)) ** 3``; pruned weights stay pruned.

    Steps are optimizer steps as an ``int`` or strings like ``"500it"``, ``"2ep"``, ``"1ep50it"``. The network
    trains at ``initial`` density until ``start`` (dense by default) and at ``final`` after ``end``.

    >>> GMPCallback(initial=0.5, final=0.8)
    Traceback (most recent call last):
    ValueError: final=0.8 is not below initial=0.5: gradual pruning lowers the density.

    Args:
        initial: density until ``start``, in (0, 1].
        final: density from ``end`` on, in (0, 1), below ``initial``.
        start: the step pruning starts from (its first event is ``every`` steps later).
        end: the step of the last pruning event; default: three quarters of training
            (``trainer.estimated_stepping_batches``), leaving the last quarter to recover at ``final``.
        every: optimizer steps between pruning events.
        schedule: the path from ``initial`` to ``final`` by name (``lt_lightning.pruning.SCHEDULES``): ``"cubic"``
            (Zhu & Gupta's, above), ``"geometric"``, ``"linear"``, ...
        allocation: how each event spreads the kept weights over layers (``lt_lightning.pruning.ALLOCATIONS``):
            ``"layerwise"`` (Zhu & Gupta: the same density in every layer), ``"global"``, ``"erk"``, ...
        keep_dense: regex of prunable parameters never pruned; the densities apply to the others.
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`).
        dirpath: folder of ``tickets/gmp_final.pt`` (final masks and weights); default: the trainer's log dir.
        save_ticket: write that ticket at the end of the fit.
    """

    prefix = "gmp"

    def __init__(
        self,
        initial: float = 1.0,
        final: float = 0.1,
        start: int | str = 0,
        end: int | str | None = None,
        every: int | str = 100,
        schedule: str = "cubic",
        allocation: str = "layerwise",
        keep_dense: str | None = None,
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        dirpath: str | None = None,
        save_ticket: bool = True,
    ) -> None:
        check_density("initial", initial)
        check_fraction("final", final)
        if final >= initial:
            raise ValueError(f"final={final} is not below initial={initial}: gradual pruning lowers the density.")
        self.start = check_step("start", start)
        self.end = check_step("end", end) if end is not None else None
        self.every = check_step("every", every, nonzero=True)
        check_schedule(schedule)
        self.schedule = schedule
        super().__init__(PruningSpec(score="magnitude", allocation=allocation, keep_dense=keep_dense,
                                     include=include, exclude=exclude, types=types), dirpath, save_ticket)
        self.initial = initial
        self.final = final
        self._steps = (0, 0, 0)  # start, end, every in optimizer steps, from on_train_start on

    @override
    def config(self) -> dict[str, Any]:
        return {**super().config(), "initial": self.initial, "final": self.final, "schedule": self.schedule,
                "steps": list(self._steps)}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        per_epoch = steps_per_epoch(trainer)
        total = trainer.estimated_stepping_batches

        def resolve(name: str, step: Step) -> int:
            if step.epochs and per_epoch == math.inf:
                raise ValueError(f"{name}={str(step)!r} counts epochs, but the train loader has no length; use 'Nit'.")
            return step.to_steps(int(per_epoch) if step.epochs else 1)

        if self.end is None and not math.isfinite(total):
            raise ValueError("end=None is three quarters of training, which has no finite length here: set end, or"
                             " max_steps, or max_epochs with a sized train loader.")
        start, every = resolve("start", self.start), resolve("every", self.every)
        end = resolve("end", self.end) if self.end is not None else int(0.75 * total)
        if end <= start:
            raise ValueError(f"GMPCallback prunes from start={str(self.start)!r} ({start} steps) to end="
                             f"{str(self.end) if self.end is not None else 'None'!r} ({end} steps): end must come"
                             " after start.")
        if end > total:
            raise ValueError(f"end={str(self.end)!r} ({end} steps) is beyond the {int(total)} optimizer steps of"
                             " training; allowed: up to the training's last step.")
        self._steps = (start, end, every)
        super().on_train_start(trainer, pl_module)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks:
        dense = Masks.dense(pl_module, self._names)
        return dense if self.initial == 1.0 else self.spec.prune(ScoreContext(pl_module, dense), self.initial)

    @override
    def is_update_step(self, step: int) -> bool:
        return is_gmp_event(step, *self._steps)

    @override
    def updated_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int
                      ) -> tuple[Masks, dict[str, float]]:
        assert self.masks is not None
        start, end, _ = self._steps
        density = gmp_density(step, self.initial, self.final, start, end, self.schedule)
        return self.spec.prune(ScoreContext(pl_module, self.masks), density), {"target_density": density}
