"""Mask updates of dynamic sparse training, chosen by name (jaxpruner style).

An updater is ``fn(masks, weights, grads, fraction, generator) -> (new_masks, grown)``: each layer drops the
``int(fraction * kept)`` kept weights of smallest magnitude and grows as many among the others (the ones just dropped
included), so every layer keeps exactly as many weights as before. ``grown`` marks the positions newly kept (pruned
before the update): their weights and optimizer state start at zero (:func:`~lt_lightning.dynamic.optim.start_at_zero_`).
A weight dropped and grown back in the same update keeps its value, as if it had never left. Registered:

- ``"rigl"`` (Evci et al. 2020): grow where the magnitude of the dense gradient is largest;
- ``"set"`` (Mocanu et al. 2018): grow at random (drawn from ``generator``).

>>> masks = Masks({"w": torch.tensor([True, True, False, False])})
>>> weights = {"w": torch.tensor([0.1, 2.0, 0.0, 0.0])}
>>> grads = {"w": torch.tensor([0.0, 0.0, 0.5, 3.0])}
>>> new, grown = UPDATERS["rigl"](masks, weights, grads, 0.5, torch.Generator())
>>> new["w"].tolist(), grown["w"].tolist()
([False, True, False, True], [False, False, False, True])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import torch
from torch import Tensor

from lt_lightning.masks import Masks
from lt_lightning.pruning.threshold import keep_top_k
from lt_lightning.registry import Registry

__all__ = ["NEEDS_GRADIENTS", "UPDATERS", "UpdateFn", "drop_and_grow", "mask_changes", "register_updater"]


class UpdateFn(Protocol):
    def __call__(self, masks: Masks, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor] | None,
                 fraction: float, generator: torch.Generator) -> tuple[Masks, dict[str, Tensor]]:
        ...


UPDATERS: Registry[UpdateFn] = Registry("mask updater")

#: Names of the updaters that read ``grads``: the dense gradients of the masked weights (pruned ones included).
NEEDS_GRADIENTS: set[str] = set()


def register_updater(name: str, *, needs_gradients: bool = False) -> Callable[[UpdateFn], UpdateFn]:
    """Register ``fn(masks, weights, grads, fraction, generator) -> (new_masks, grown)`` under ``name``; use as a
    decorator. ``needs_gradients=True`` declares that it reads ``grads``."""

    def decorator(fn: UpdateFn) -> UpdateFn:
        UPDATERS.register(name)(fn)
        if needs_gradients:
            NEEDS_GRADIENTS.add(name)
        return fn

    return decorator


def drop_and_grow(masks: Masks, weights: Mapping[str, Tensor], grow_scores: Mapping[str, Tensor],
                  fraction: float) -> tuple[Masks, dict[str, Tensor]]:
    """Per layer: drop the ``k = int(fraction * kept)`` kept weights of smallest ``|weight|``, then grow the ``k``
    highest ``grow_scores`` among the positions not kept after the drop. Returns the new masks and the grown
    positions (newly kept), on the weights' devices. Ties go to the lower index.

    >>> masks = Masks({"w": torch.tensor([True, True, True, False])})
    >>> new, grown = drop_and_grow(masks, {"w": torch.tensor([3.0, 0.5, 1.0, 0.0])},
    ...                            {"w": torch.tensor([0.0, 0.2, 0.0, 0.1])}, 0.4)  # k = int(1.2) = 1
    >>> new["w"].tolist(), grown["w"].tolist()  # 0.5 dropped, and grown back: it beats the pruned weight's 0.1
    ([True, True, True, False], [False, False, False, False])
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} is not allowed; expected a number in [0, 1].")
    new: dict[str, Tensor] = {}
    grown: dict[str, Tensor] = {}
    for name, mask in masks.items():
        weight = weights[name].detach()
        mask = mask.to(weight.device)
        kept = int(mask.sum())
        k = int(fraction * kept)
        survivors = keep_top_k([weight.abs().masked_fill(~mask, float("-inf"))], kept - k)[0]
        candidates = grow_scores[name].to(device=weight.device, dtype=torch.float32).masked_fill(survivors,
                                                                                                float("-inf"))
        new[name] = survivors | keep_top_k([candidates], k)[0]
        grown[name] = new[name] & ~mask
    return Masks(new), grown


@register_updater("rigl", needs_gradients=True)
def rigl(masks: Masks, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor] | None, fraction: float,
         generator: torch.Generator) -> tuple[Masks, dict[str, Tensor]]:
    """RigL: grow where ``|grad|`` is largest (Evci et al. 2020)."""
    if grads is None:
        raise ValueError("the 'rigl' updater grows by the dense gradients; grads is None.")
    return drop_and_grow(masks, weights, {n: grads[n].detach().abs() for n in masks}, fraction)


@register_updater("set")
def set_(masks: Masks, weights: Mapping[str, Tensor], grads: Mapping[str, Tensor] | None, fraction: float,
         generator: torch.Generator) -> tuple[Masks, dict[str, Tensor]]:
    """SET: grow at random positions (Mocanu et al. 2018); ``grads`` is not read."""
    return drop_and_grow(masks, weights, {n: torch.rand(m.shape, generator=generator) for n, m in masks.items()},
                         fraction)


def mask_changes(old: Mapping[str, Tensor], new: Mapping[str, Tensor]) -> dict[str, dict[str, int]]:
    """Per layer, how many weights an update dropped (kept before, not after) and grew (the reverse).

    >>> mask_changes({"w": torch.tensor([True, True, False])}, {"w": torch.tensor([True, False, True])})
    {'dropped': {'w': 1}, 'grown': {'w': 1}}
    """
    dropped, grown = {}, {}
    for name, before in old.items():
        before, after = before.cpu(), new[name].cpu()
        dropped[name] = int((before & ~after).sum())
        grown[name] = int((after & ~before).sum())
    return {"dropped": dropped, "grown": grown}
