"""Shared assertions about masked networks, for the conformance suite and any test that needs them."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import torch
from lightning.pytorch.callbacks import Callback

from lt_lightning.masks import Masks


def assert_pruned_zero(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], where: object = "") -> None:
    """Every weight that ``masks`` prunes is exactly zero in ``weights`` (a state dict, named parameters, ...)."""
    for name, mask in masks.items():
        tensor = weights[name].detach()
        assert bool((tensor[~mask.to(tensor.device)] == 0).all()), f"{name}: pruned weights not zero {where}".strip()


def weight(module: torch.nn.Module, name: str) -> torch.Tensor:
    """The tensor a masked name stands for, read as the forward reads it: a parameter, a coefficient tensor, or the
    weight a parametrization computes (a supermask's masked weight)."""
    return functools.reduce(getattr, name.split("."), module)


def owner_of(name: str) -> str:
    """The module whose forward uses the tensor ``name`` (``a.b.weight`` and ``a.b.parametrizations.weight.*``:
    ``a.b``)."""
    return name.split(".parametrizations.")[0] if ".parametrizations." in name else name.rpartition(".")[0]


class ZeroWatcher(Callback):
    """Placed after the masking callback: before every forward of a masked layer (training, validation, sanity
    check), the pruned weights of ``source.masks`` are exactly zero; so are those of every checkpoint saved."""

    def __init__(self, source: Callback, checkpoint_has_weights: bool = True) -> None:
        self.source, self.checkpoint_has_weights = source, checkpoint_has_weights
        self.checked = self.checkpoints = 0
        self._handles: list = []

    def on_fit_start(self, trainer, pl_module):
        for path, module in pl_module.named_modules():
            self._handles.append(module.register_forward_pre_hook(functools.partial(self._check, pl_module, path)))

    def _check(self, root, path, module, args):
        masks = self.source.masks
        owned = {n: m for n, m in (masks or {}).items() if owner_of(n) == path}
        if owned:
            assert_pruned_zero({n: weight(root, n) for n in owned}, owned, "in a forward")
            self.checked += 1

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if self.checkpoint_has_weights and self.source.masks is not None:
            assert_pruned_zero(checkpoint["state_dict"], self.source.masks, "in a checkpoint")
            self.checkpoints += 1

    def teardown(self, trainer, pl_module, stage):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class StepCounter(Callback):
    """Counts the optimizer steps Lightning is about to take."""

    def __init__(self) -> None:
        self.steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.steps += 1


def checkpoint_masks(checkpoint: Mapping, state_key: str) -> Masks | None:
    """The masks a masking callback saved in a Lightning checkpoint (``None`` if its state holds none)."""
    packed = checkpoint["callbacks"].get(state_key, {}).get("masks")
    return Masks.unpack(packed) if packed is not None else None
