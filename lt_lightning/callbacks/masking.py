"""MaskingCallback: keep a fixed set of masks enforced through training, in checkpoints and across ranks.

It is the base of the pruning callbacks (which change the masks at chosen times) and, alone, trains a ticket file
sparsely: ``MaskingCallback(ticket="round_05.pt")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from typing_extensions import override

from lt_lightning.callbacks._trainer import check_strategy, log_metrics
from lt_lightning.masks import DEFAULT_TYPES, MaskEnforcer, Masks, select_parameters
from lt_lightning.pruning.prune import match_parameters
from lt_lightning.ticket import load_ticket


class MaskingCallback(Callback):
    """Keep pruned weights at exactly zero: after every optimizer step, and in gradients before clipping.

    Enforcement is one fused multiply per (device, dtype) group, registered as a post-step hook on each optimizer,
    so it runs before any other hook can see or save the weights. No forward hooks are used.

    Gradients of pruned weights are zeroed only when gradients are clipped (``gradient_clip_val`` or an overridden
    ``configure_gradient_clipping``), so that the clipping norm is the sparse network's. Otherwise they are left
    alone: optimizers update each weight from its own gradient, so the kept weights train exactly as in the sparse
    network, and the pruned ones are zeroed after the step. Zeroing them regardless would cost time for nothing:
    Adam's second moments would stay exactly zero, and ``sqrt`` of zeros is ~7x slower than of other values on
    some CPUs (AVX2, measured in ``benchmarks/mask_overhead.py``).

    Args:
        ticket: path of a ticket file to train; its masks are kept for the whole fit.
        ticket_weights: load the ticket's weights too (``False``: keep the module's own initialization and only
            apply the masks, i.e. the randomly re-initialised control).
    """

    def __init__(self, ticket: str | None = None, ticket_weights: bool = True) -> None:
        self.ticket = ticket
        self.ticket_weights = ticket_weights
        self.masks: Masks | None = None
        self._enforcer: MaskEnforcer | None = None
        self._hooks: list[Any] = []
        self._mask_grads = False

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(ticket=self.ticket)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        check_strategy(trainer, type(self).__name__)
        others = [type(c).__name__ for c in trainer.callbacks if isinstance(c, MaskingCallback) and c is not self]
        if others:
            raise ValueError(f"{type(self).__name__} sets the masks of this fit; the Trainer also has {others}, which"
                             " set their own: give the Trainer one masking callback.")
        if self.ticket is not None and self.masks is None:
            loaded = load_ticket(self.ticket)
            loaded.apply(pl_module, weights=self.ticket_weights)
            self.masks = loaded.masks

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mask_grads = bool(trainer.gradient_clip_val) or is_overridden("configure_gradient_clipping", pl_module)
        for optimizer in trainer.optimizers:
            self._hooks.append(optimizer.register_step_post_hook(self._after_step))
        if self.masks is not None:
            self.set_masks(trainer, pl_module, self.masks)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._mask_grads and self._enforcer is not None:
            self._enforcer.mask_grads_()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._enforcer is not None:
            self._enforcer.enforce_()

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def set_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule, masks: Masks | None) -> Masks:
        """Make ``masks`` (rank 0's; other ranks may pass ``None``) the masks of every rank, and zero pruned weights."""
        packed = trainer.strategy.broadcast(masks.pack() if masks is not None else None, src=0)
        masks = Masks.unpack(packed)
        masks.check(pl_module)
        self.masks = masks
        self._enforcer = MaskEnforcer(pl_module, masks)
        self._enforcer.enforce_()
        return masks

    def log_densities(self, trainer: pl.Trainer, prefix: str) -> None:
        """Log the global and per-layer densities of the current masks."""
        if self.masks is None:
            return
        metrics = {f"{prefix}/density": self.masks.density()}
        metrics.update({f"{prefix}/layer_density/{n}": d for n, d in self.masks.layer_densities().items()})
        log_metrics(trainer, metrics)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks.pack() if self.masks is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        packed = state_dict.get("masks")
        self.masks = Masks.unpack(packed) if packed is not None else None


def prunable_names(
    pl_module: pl.LightningModule,
    include: str | None,
    exclude: str | None,
    types: Sequence[str] = DEFAULT_TYPES,
    per_layer: Mapping[str, float] | None = None,
    per_layer_arg: str = "",
    keep_dense: str | None = None,
) -> tuple[list[str], dict[str, float]]:
    """The prunable parameters (said once at info level, so users see what densities count) and ``per_layer``'s
    ``{regex: value}`` resolved to ``{name: value}``; every regex must match a prunable parameter."""
    names = select_parameters(pl_module, include=include, exclude=exclude, types=types)
    by_name: dict[str, float] = {}
    for pattern, value in (per_layer or {}).items():
        by_name.update(dict.fromkeys(match_parameters(pattern, names, per_layer_arg), value))
    if keep_dense is not None:
        match_parameters(keep_dense, names, "keep_dense")
    params = dict(pl_module.named_parameters())
    total = sum(p.numel() for p in params.values())
    prunable = sum(params[n].numel() for n in names)
    rank_zero_info(
        f"lt-lightning: {len(names)} prunable tensors, {prunable:,} of {total:,} parameters"
        f" ({prunable / max(total, 1):.1%}); densities count these only."
    )
    return names, by_name
