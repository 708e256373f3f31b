"""MaskUpdateCallback: what the callbacks whose masks change during training share (RigL, SET, gradual magnitude
pruning).

After the optimizer step that completes an update step, the new masks are computed on rank zero and broadcast;
weights that enter the masks start at zero, with zero optimizer state; every update is recorded (:attr:`updates`)
and logged; at the end of the fit the final masks and trained weights are written as a ticket. A method overrides
:meth:`~MaskUpdateCallback.is_update_step` (when) and :meth:`~MaskUpdateCallback.updated_masks` (what), besides the
template hooks of :class:`~lt_lightning.callbacks.base.BaseMaskingCallback`.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
from typing_extensions import override

from lt_lightning.callbacks._trainer import log_metrics, run_dir
from lt_lightning.callbacks.base import BaseMaskingCallback, announce_prunable, on_rank_zero
from lt_lightning.dynamic import mask_changes, start_at_zero_
from lt_lightning.layout import TICKETS_DIR
from lt_lightning.masks import Masks, named_parameters, plain_state_dict
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.ticket import Ticket
from lt_lightning.validation import check_bool


class MaskUpdateCallback(BaseMaskingCallback):
    """Masks that change after chosen optimizer steps; see the module docstring.

    Every attached logger (CSV, TensorBoard, W&B, ...) gets, per update, ``<prefix>/dropped/<param>`` and
    ``<prefix>/grown/<param>`` (weights that left and entered each layer's mask), ``<prefix>/mask_overlap`` (IoU of
    the kept weights with the masks before), ``<prefix>/density`` and ``<prefix>/layer_density/<param>``, and what
    the method adds (RigL's ``drop_fraction``, GMP's ``target_density``); the densities are also logged at the start.

    Args:
        spec: which parameters are prunable, and how the method's pruning events score and allocate.
        dirpath: folder of ``tickets/<prefix>_final.pt``; default: the trainer's log dir.
        save_ticket: write the final masks and trained weights as a ticket at the end of the fit.
    """

    #: Prefix of the logged scalars and of the final ticket's name.
    prefix = "masks"

    def __init__(self, spec: PruningSpec, dirpath: str | None = None, save_ticket: bool = True) -> None:
        super().__init__()
        if dirpath is not None and (not isinstance(dirpath, str) or os.path.isfile(dirpath)):
            raise ValueError(f"dirpath={dirpath!r} is not allowed; expected a folder for tickets/.")
        check_bool("save_ticket", save_ticket)
        self.spec = spec
        self.dirpath = dirpath
        self.save_ticket = save_ticket
        #: Path of the final ticket once written.
        self.ticket: str | None = None
        self._updates: list[dict[str, Any]] = []
        self._names: list[str] = []
        self._run_dir = ""
        self._step_at_batch_start = -1
        self._resumed_config: dict[str, Any] | None = None

    @property
    def updates(self) -> list[dict[str, Any]]:
        """One record per update: ``step``, ``dropped`` and ``grown`` (per parameter), ``mask_overlap``,
        ``density``, and what the method adds."""
        self._adopt_spawned_results()
        return self._updates

    # ------------------------------------------------------------------ what a method overrides
    def config(self) -> dict[str, Any]:
        """The arguments (and resolved steps) that a resumed fit must share with the checkpoint's run."""
        return {"include": self.spec.include, "exclude": self.spec.exclude, "types": list(self.spec.types),
                "keep_dense": self.spec.keep_dense, "allocation": self.spec.allocation}

    def is_update_step(self, step: int) -> bool:
        """Whether the masks change after ``step`` optimizer steps."""
        raise NotImplementedError

    def updated_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int
                      ) -> tuple[Masks, dict[str, float]]:
        """The new masks after ``step`` optimizer steps (rank zero), and scalars for the update's record."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        # A new fit starts afresh; a resumed one gets its state from the checkpoint, which Lightning loads next.
        self.masks, self._updates, self.ticket, self._resumed_config = None, [], None, None
        self._run_dir = run_dir(trainer, self.dirpath)

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._names, _ = self.spec.resolve(pl_module)
        announce_prunable(pl_module, self._names, self.spec.types)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Subclasses resolve their steps first: the resumed run's config is compared here."""
        if self._resumed_config is not None:
            changed = [f"{k}: {v!r} in the checkpoint, {self.config().get(k)!r} now"
                       for k, v in self._resumed_config.items() if self.config().get(k) != v]
            if changed:
                raise ValueError(f"{type(self).__name__} cannot resume this checkpoint with other arguments: "
                                 + "; ".join(changed) + ". Resume with the Trainer and arguments of the original run.")
        fresh = self.masks is None
        super().on_train_start(trainer, pl_module)
        if fresh:
            self.log_densities(trainer, self.prefix)

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step != self._step_at_batch_start and self.is_update_step(step):  # an optimizer step was taken
            self._update(trainer, pl_module, step)

    def _update(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        old = self.masks
        assert old is not None
        computed = on_rank_zero(trainer, type(self).__name__, lambda: self.updated_masks(trainer, pl_module, step))
        masks, extra = computed or (None, None)
        new = self.set_masks(trainer, pl_module, masks)
        changes = mask_changes(old, new)
        grown = {n: new[n] & ~old[n] for n, count in changes["grown"].items() if count}
        # Every rank resets its own optimizer state, at the positions of rank zero's masks.
        start_at_zero_(named_parameters(pl_module), grown, trainer.optimizers)
        record = {"step": step, **trainer.strategy.broadcast(extra, src=0), **changes,
                  "mask_overlap": new.overlap(old), "density": new.density()}
        self._updates.append(record)
        p = self.prefix
        metrics = {f"{p}/{k}": float(v) for k, v in record.items() if k not in ("step", "dropped", "grown")}
        for kind in ("dropped", "grown"):
            metrics.update({f"{p}/{kind}/{n}": float(c) for n, c in changes[kind].items()})
        metrics.update({f"{p}/layer_density/{n}": d for n, d in new.layer_densities().items()})
        log_metrics(trainer, metrics)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if not self.save_ticket or self.masks is None:
            return
        self.ticket = os.path.join(self._run_dir, TICKETS_DIR, f"{self.prefix}_final.pt")
        if trainer.is_global_zero:
            metadata = {"method": self.prefix, **self.config(), "step": trainer.global_step,
                        "updates": len(self._updates), "density": self.masks.density(),
                        "layer_density": self.masks.layer_densities(), "trained": True}
            Ticket.from_state(plain_state_dict(pl_module), self.masks, metadata).save(self.ticket)

    # ------------------------------------------------------------------ checkpoints
    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "updates": self._updates, "config": self.config(), "ticket": self.ticket}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._updates = list(state_dict["updates"])
        self._resumed_config = dict(state_dict["config"])
        self.ticket = state_dict["ticket"]
