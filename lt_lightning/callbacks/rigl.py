"""RigLCallback: dynamic sparse training, the masks rewired every ``update_every`` optimizer steps at a fixed density
(Evci et al. 2020). SET is the same with random growth (:mod:`lt_lightning.callbacks.sparse_evolutionary`)."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lt_lightning.callbacks.updating import MaskUpdateCallback
from lt_lightning.dynamic import (
    NEEDS_GRADIENTS,
    UPDATERS,
    check_distribution,
    check_erk_fits,
    check_resettable,
    cosine_drop_fraction,
    is_update_step,
)
from lt_lightning.masks import DEFAULT_TYPES, Masks, named_parameters
from lt_lightning.pruning import ScoreContext
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.validation import check_bool, check_fraction, check_int, check_seed


class RigLCallback(MaskUpdateCallback):
    """RigL (Evci et al. 2020): train a sparse network whose masks are rewired during training, at a fixed density.

    Before the first step, random masks keep ``density`` of the prunable weights, spread over layers by
    ``distribution``: ``"erk"`` (Erdős–Rényi-Kernel: layer densities proportional to ``sum(shape) / prod(shape)``) or
    ``"uniform"`` (the same density in every layer). Then after every ``update_every``-th optimizer step before
    ``stop`` of training, each layer drops its ``int(f * kept)`` kept weights of smallest magnitude and grows as many
    where the magnitude of the dense gradient of that step is largest, ``f`` decaying by a cosine from
    ``drop_fraction`` to 0 at ``stop``. The update follows that step's optimizer step, from its weights and gradients
    (RigL's reference code skips the optimizer step of an update step instead). Layer densities stay exact. Grown
    weights start at zero, and so does their optimizer state (momentum, Adam's moments, any state tensor shaped like
    the parameter); optimizers without a state per weight (LBFGS, Rprop, Adafactor) are refused before training.

    Cost: the gradient of pruned weights is computed by backward anyway (masks zero weights, not gradients); only on
    update steps is it read (copied once, on rank zero). Masks are computed on rank zero and broadcast; checkpoints
    hold them and the update records, and a resumed fit goes on exactly where it stopped.

    >>> RigLCallback(density=0.1, update_every=0)
    Traceback (most recent call last):
    ValueError: update_every=0 is not allowed; expected an int >= 1 (optimizer steps between mask updates).

    Args:
        density: fraction of the prunable weights kept, in (0, 1).
        distribution: ``"erk"`` or ``"uniform"`` layer densities. ERK gives small layers higher densities; a layer
            it would give more than 1 is kept dense (see ``allow_dense_layers``).
        update_every: optimizer steps between mask updates, >= 1.
        drop_fraction: fraction of each layer's kept weights rewired by an update at step 0 (decayed by a cosine to
            0 at ``stop``), in (0, 1).
        stop: fraction of training (of ``trainer.estimated_stepping_batches``) after which the masks stay fixed, in
            (0, 1).
        allow_dense_layers: where ERK would give a layer a density above 1 (a small classifier head), keep that
            layer dense and scale the others up so that ``density`` of all prunable weights is kept, as RigL's
            reference code does, saying so in one info line; ``False`` refuses such a density before training.
        keep_dense: regex of prunable parameters kept dense (e.g. the first layer); ``density`` applies to the others.
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`).
        dirpath: folder of ``tickets/<method>_final.pt`` (final masks and weights); default: the trainer's log dir.
        save_ticket: write that ticket at the end of the fit.
        seed: seed of the initial random masks (and of SET's random growth).
    """

    #: The mask updater (``lt_lightning.dynamic.UPDATERS``): what distinguishes RigL from SET.
    updater = "rigl"
    prefix = "rigl"

    def __init__(
        self,
        density: float = 0.1,
        distribution: Literal["erk", "uniform"] = "erk",
        update_every: int = 100,
        drop_fraction: float = 0.3,
        stop: float = 0.75,
        allow_dense_layers: bool = True,
        keep_dense: str | None = None,
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        dirpath: str | None = None,
        save_ticket: bool = True,
        seed: int = 0,
    ) -> None:
        check_fraction("density", density)
        allocation = check_distribution(distribution)
        check_int("update_every", update_every, minimum=1, why="optimizer steps between mask updates")
        check_fraction("drop_fraction", drop_fraction)
        check_fraction("stop", stop)
        check_bool("allow_dense_layers", allow_dense_layers)
        check_seed("seed", seed)  # with the update step, one 64-bit generator seed per update: (seed << 32) + step
        super().__init__(PruningSpec(score="random", allocation=allocation, keep_dense=keep_dense, include=include,
                                     exclude=exclude, types=types, seed=seed), dirpath, save_ticket)
        self.density = density
        self.distribution = distribution
        self.update_every = update_every
        self.drop_fraction = drop_fraction
        self.stop = stop
        self.allow_dense_layers = allow_dense_layers
        self._stop_step = 0
        self._grads: dict[str, torch.Tensor] | None = None

    @override
    def config(self) -> dict[str, Any]:
        return {**super().config(), "updater": self.updater, "density": self.density,
                "distribution": self.distribution, "update_every": self.update_every,
                "drop_fraction": self.drop_fraction, "stop": self.stop, "stop_step": self._stop_step,
                "allow_dense_layers": self.allow_dense_layers,
                "seed": self.spec.seed}

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().prepare(trainer, pl_module)
        for optimizer in trainer.optimizers:
            check_resettable(optimizer, type(self).__name__)
        if self.distribution == "erk" and not self.allow_dense_layers:
            params = named_parameters(pl_module)
            dense = set(self.spec.dense_names(self._names))
            check_erk_fits({n: tuple(params[n].shape) for n in self._names if n not in dense}, self.density)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(f"stop={self.stop} is a fraction of training, which has no finite length here: set"
                             " max_steps, or max_epochs with a sized train loader.")
        self._stop_step = int(self.stop * total)
        if self._stop_step <= self.update_every:
            rank_zero_warn(f"lt-lightning: {type(self).__name__} updates the masks every {self.update_every} steps"
                           f" until step {self._stop_step} (stop={self.stop} of {int(total)}): no update will happen,"
                           " the masks stay the initial random ones. Lower update_every or train longer.")
        super().on_train_start(trainer, pl_module)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks:
        generator = torch.Generator().manual_seed(self.spec.seed)
        masks = self.spec.prune(ScoreContext(pl_module, Masks.dense(pl_module, self._names), generator=generator),
                                self.density)
        if self.distribution == "erk":
            self._announce_dense_layers(pl_module, masks)
        return masks

    def _announce_dense_layers(self, pl_module: pl.LightningModule, masks: Masks) -> None:
        """Name the layers ERK kept dense (beyond ``keep_dense``): the user asked for ``density`` everywhere."""
        kept_dense = set(self.spec.dense_names(self._names))
        full = [n for n, d in masks.layer_densities().items() if d == 1.0 and n not in kept_dense]
        if not full:
            return
        params = named_parameters(pl_module)
        layers = ", ".join(f"{n} ({'x'.join(map(str, params[n].shape))})" for n in full)
        rank_zero_info(f"lt-lightning: {type(self).__name__} keeps {len(full)} layer(s) dense that ERK at"
                       f" density={self.density} would give a density above 1, as RigL's reference code does: {layers};"
                       f" the other layers are scaled up, overall density {masks.density():.4f}"
                       " (allow_dense_layers=False refuses such a density instead).")

    @override
    def is_update_step(self, step: int) -> bool:
        return is_update_step(step, self.update_every, self._stop_step)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # Before the base class may zero pruned gradients (when clipping): the update needs them dense.
        if (self.updater in NEEDS_GRADIENTS and trainer.is_global_zero and self.masks is not None
                and self.is_update_step(trainer.global_step + 1)):
            params = named_parameters(pl_module)
            self._grads = {n: params[n].grad.detach().clone() if params[n].grad is not None
                           else torch.zeros_like(params[n]) for n in self.masks}
        super().on_before_optimizer_step(trainer, pl_module, optimizer)

    @override
    def updated_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int
                      ) -> tuple[Masks, dict[str, float]]:
        assert self.masks is not None
        grads, self._grads = self._grads, None
        if self.updater in NEEDS_GRADIENTS and grads is None:
            raise RuntimeError(f"no gradients were read before the optimizer step that ended at update step {step};"
                               " was the optimizer stepped outside Lightning (manual optimization without"
                               " self.optimizers())?")
        fraction = cosine_drop_fraction(step, self.drop_fraction, self._stop_step)
        params = named_parameters(pl_module)
        generator = torch.Generator().manual_seed((self.spec.seed << 32) + step)
        masks, _ = UPDATERS[self.updater](self.masks, {n: params[n] for n in self.masks}, grads, fraction, generator)
        return masks, {"drop_fraction": fraction}

