"""BaseMaskingCallback: what every masking callback shares, and the template hooks a new method overrides.

Shared: one masking callback per Trainer, supported strategies, masks computed on rank zero and broadcast, pruned
weights zeroed after every optimizer step (and before every forward inside a closure-based step), pruned gradients
zeroed for clipping, masks in checkpoints. A method overrides:

- :meth:`prepare` (all ranks, from ``on_fit_start``): check its arguments against the module, which is built by then
  (layers made in ``setup()`` or ``configure_model()`` included);
- :meth:`initial_masks` (rank zero, from ``on_train_start``, when no checkpoint gave masks): the masks to start from;
- :meth:`mask_gradients`: whether pruned gradients are zeroed before the optimizer sees them;
- and calls :meth:`set_masks` whenever its masks change.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from typing_extensions import override

from lt_lightning.callbacks._trainer import callbacks_of, check_strategy, log_metrics, runs_in_launched_processes
from lt_lightning.files import atomic_torch_save
from lt_lightning.masks import MaskEnforcer, Masks, named_parameters, selection_notes

T = TypeVar("T")

# Callbacks whose work spans the fit's length or changes weights on its own schedule: refused next to a masking
# callback, with the reason (see the README's compatibility section).
_REFUSED = {
    "StochasticWeightAveraging": "it averages weights over the fit's last epochs into a dense model",
    "ModelPruning": "it prunes with its own masks and forward hooks",
    "LearningRateFinder": "it trains and resets the model before the fit: run Tuner(trainer).lr_find first",
    "BatchSizeFinder": "it trains and resets the model before the fit: run Tuner(trainer).scale_batch_size first",
    "BaseFinetuning": "it unfreezes layers at epochs of the fit, which the rounds do not share",
    "GradientAccumulationScheduler": "it changes accumulation at epochs of the fit, which the rounds do not share",
}


class BaseMaskingCallback(Callback):
    """Keep pruned weights at exactly zero: after every optimizer step, inside closure-based steps (LBFGS) before
    every re-evaluation of the loss, and in gradients before clipping. See the module docstring for the hooks a
    method overrides.

    Gradients of pruned weights are zeroed only when gradients are clipped (``gradient_clip_val`` or an overridden
    ``configure_gradient_clipping``), so that the clipping norm is the sparse network's, and for closure-based
    optimizers, whose line searches read the gradient. Otherwise they are left alone: optimizers update each weight
    from its own gradient, so the kept weights train exactly as in the sparse network, and the pruned ones are zeroed
    after the step. Zeroing them regardless would cost time for nothing: Adam's second moments would stay exactly
    zero, and ``sqrt`` of zeros is ~7x slower than of other values on some CPUs (AVX2).
    """

    def __init__(self) -> None:
        self._masks: Masks | None = None
        self._enforcer: MaskEnforcer | None = None
        self._hooks: list[Any] = []
        self._mask_grads = False
        # Under ddp_spawn the fit runs in other processes, on copies of this object: rank zero leaves its final
        # state in this file, and the launching process takes it on the first look at the results.
        self._ran_here = False
        self._results_file = os.path.join(tempfile.gettempdir(), f"lt-lightning-{uuid.uuid4().hex}.pt")

    @property
    def masks(self) -> Masks | None:
        """The masks in force (parameter name -> bool tensor), ``None`` before the fit gives them."""
        self._adopt_spawned_results()
        return self._masks

    @masks.setter
    def masks(self, masks: Masks | None) -> None:
        self._masks = masks

    def _adopt_spawned_results(self) -> None:
        if not self._ran_here and os.path.isfile(self._results_file):
            state = torch.load(self._results_file, map_location="cpu", weights_only=False)
            os.remove(self._results_file)
            self._ran_here = True
            self.load_state_dict(state)

    @property
    @override
    def state_key(self) -> str:
        # One masking callback per Trainer: the key does not depend on arguments, so a checkpoint's state is found
        # even when the arguments changed (the callback then decides whether it can continue).
        return type(self).__name__

    # ------------------------------------------------------------------ template hooks
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Check the arguments against the built module, on every rank, before anything trains."""

    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks | None:
        """The masks to start from (rank zero; the others receive them); ``None``: no masks yet."""
        return None

    def mask_gradients(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> bool:
        return bool(trainer.gradient_clip_val) or is_overridden("configure_gradient_clipping", pl_module)

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._ran_here = True
        check_strategy(trainer, type(self).__name__)
        others = [type(c).__name__ for c in callbacks_of(trainer) if isinstance(c, BaseMaskingCallback) and c is not self]
        if others:
            raise ValueError(f"{type(self).__name__} sets the masks of this fit; the Trainer also has {others}, which"
                             " set their own: give the Trainer one masking callback.")
        refused = [(type(c).__name__, why) for c in callbacks_of(trainer) for name, why in _REFUSED.items()
                   if name in {k.__name__ for k in type(c).__mro__}]
        if refused:
            name, why = refused[0]
            raise ValueError(f"{type(self).__name__} cannot run with {name} in the Trainer: {why}. Remove it; the"
                             " README's compatibility section lists what works per round.")

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.prepare(trainer, pl_module)
        if self.masks is not None:  # restored from a checkpoint, or given (a ticket)
            self.set_masks(trainer, pl_module, self.masks)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        closures = any(isinstance(o, torch.optim.LBFGS) for o in trainer.optimizers)
        self._mask_grads = closures or self.mask_gradients(trainer, pl_module)
        for optimizer in trainer.optimizers:
            if isinstance(optimizer, torch.optim.LBFGS):
                self._hooks.append(optimizer.register_step_pre_hook(self._mask_closure))
            self._hooks.append(optimizer.register_step_post_hook(self._after_step))
        if self.masks is None:
            masks = on_rank_zero(trainer, type(self).__name__, lambda: self.initial_masks(trainer, pl_module))
            if trainer.strategy.broadcast(masks is not None, src=0):
                self.set_masks(trainer, pl_module, masks)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._mask_grads and self._enforcer is not None:
            self._enforcer.mask_grads_()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._enforcer is not None:
            self._enforcer.enforce_()

    def _mask_closure(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        """LBFGS moves the weights and re-evaluates the loss several times inside one step: every evaluation starts
        from masked weights and hands back masked gradients, so the line search stays in the sparse network."""
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)  # args[0] is the optimizer
        if closure is None or self._enforcer is None:
            return None
        enforcer = self._enforcer

        def masked_closure() -> Any:
            enforcer.enforce_()
            with torch.enable_grad():
                loss = closure()
            enforcer.mask_grads_()
            return loss

        return args[:1], {**kwargs, "closure": masked_closure}

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hooks()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero and runs_in_launched_processes(trainer):
            atomic_torch_save(self.state_dict(), self._results_file)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # ------------------------------------------------------------------ masks
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
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks", {})
        legacy = [k for k in states if isinstance(k, str) and k.startswith(f"{type(self).__name__}{{")]
        if self.state_key not in states and legacy:  # lt-lightning 0.1 keyed the state by the arguments
            self.load_state_dict(states[legacy[0]])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"masks": self.masks.pack() if self.masks is not None else None}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        packed = state_dict.get("masks")
        self.masks = Masks.unpack(packed) if packed is not None else None


def on_rank_zero(trainer: pl.Trainer, who: str, compute: Callable[[], T]) -> T | None:
    """``compute()`` on rank zero (``None`` elsewhere). If it raises, every rank raises: the other ranks would
    otherwise wait forever in the broadcast that follows."""
    result, error = None, None
    if trainer.is_global_zero:
        try:
            result = compute()
        except Exception as err:
            error = err
    failure = trainer.strategy.broadcast(f"{type(error).__name__}: {error}" if error else None, src=0)
    if error is not None:
        raise error
    if failure is not None:
        raise RuntimeError(f"{who} failed on rank zero: {failure}")
    return result


def announce_prunable(pl_module: pl.LightningModule, names: list[str], types: Sequence[str]) -> None:
    """Say once what densities count (the prunable tensors and their share of all parameters), and warn about
    Linear-like weights left dense or tied to others."""
    params = named_parameters(pl_module)
    total = sum(p.numel() for p in params.values())
    prunable = sum(params[n].numel() for n in names)
    rank_zero_info(f"lt-lightning: {len(names)} prunable tensors, {prunable:,} of {total:,} parameters"
                   f" ({prunable / max(total, 1):.1%}); densities count these only.")
    for note in selection_notes(pl_module, names, types):
        rank_zero_warn(f"lt-lightning: {note}.")
