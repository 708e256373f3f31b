"""Allocation: given scores and a target density, decide which weights each layer keeps. Chosen by name.

An allocation function takes ``(scores, masks, density)`` and returns new :class:`~lt_lightning.masks.Masks` with
``density`` (of the weights in ``masks``) kept. Weights already pruned in ``masks`` stay pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from lt_lightning.masks import Masks
from lt_lightning.pruning.threshold import keep_top_k

AllocationFn = Callable[[Mapping[str, Tensor], Masks, float], Masks]

ALLOCATIONS: dict[str, AllocationFn] = {}


def register_allocation(name: str) -> Callable[[AllocationFn], AllocationFn]:
    """Register ``fn(scores, masks, density) -> Masks`` under ``name``; use as a decorator."""

    def decorator(fn: AllocationFn) -> AllocationFn:
        if name in ALLOCATIONS:
            raise ValueError(f"an allocation named {name!r} is already registered.")
        ALLOCATIONS[name] = fn
        return fn

    return decorator


def check_allocation(name: str) -> None:
    """Raise ``ValueError`` listing the known allocations if ``name`` is not one of them."""
    if name not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {name!r}; known allocations: {sorted(ALLOCATIONS)}.")


def _alive_scores(scores: Mapping[str, Tensor], masks: Masks) -> list[Tensor]:
    """Scores with pruned weights at -inf, so that they sort last and are never chosen again."""
    return [
        torch.where(masks[n].to(scores[n].device), scores[n], torch.tensor(float("-inf"), dtype=scores[n].dtype,
                                                                          device=scores[n].device))
        for n in masks
    ]


def _count(density: float, numel: int) -> int:
    return int(round(density * numel))


@register_allocation("global")
def global_threshold(scores: Mapping[str, Tensor], masks: Masks, density: float) -> Masks:
    """One threshold across all layers: the highest-scoring ``density`` of all masked weights survive.

    >>> m = Masks({"a": torch.ones(2, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)})
    >>> s = {"a": torch.tensor([4.0, 1.0]), "b": torch.tensor([3.0, 2.0])}
    >>> {n: v.tolist() for n, v in global_threshold(s, m, 0.5).items()}
    {'a': [True, False], 'b': [True, False]}
    """
    kept = keep_top_k(_alive_scores(scores, masks), min(_count(density, masks.numel()), masks.kept()))
    return Masks(dict(zip(masks, kept)))


@register_allocation("layerwise")
def layerwise(scores: Mapping[str, Tensor], masks: Masks, density: float) -> Masks:
    """The same density in every layer, each layer pruned by its own threshold."""
    alive = _alive_scores(scores, masks)
    return Masks(
        {
            n: keep_top_k([s], min(_count(density, s.numel()), int(masks[n].sum())))[0]
            for n, s in zip(masks, alive)
        }
    )
