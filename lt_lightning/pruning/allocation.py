"""Allocation: given scores and a target density, decide which weights each layer keeps. Chosen by name.

An allocation function takes ``(scores, masks, density)`` and returns new :class:`~lt_lightning.masks.Masks` with
``density`` (of the weights in ``masks``) kept. Weights already pruned in ``masks`` stay pruned.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from lt_lightning.masks import Masks
from lt_lightning.pruning.threshold import keep_top_k
from lt_lightning.registry import Registry

AllocationFn = Callable[[Mapping[str, Tensor], Masks, float], Masks]

ALLOCATIONS: Registry[AllocationFn] = Registry("allocation")


def register_allocation(name: str) -> Callable[[AllocationFn], AllocationFn]:
    """Register ``fn(scores, masks, density) -> Masks`` under ``name``; use as a decorator."""
    return ALLOCATIONS.register(name)


check_allocation = ALLOCATIONS.check


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
    return _keep_per_layer(scores, masks, {n: _count(density, m.numel()) for n, m in masks.items()})


@register_allocation("erk")
def erk(scores: Mapping[str, Tensor], masks: Masks, density: float) -> Masks:
    """Erdős–Rényi-Kernel layer densities (:func:`erk_densities`), each layer pruned by its own threshold."""
    densities = erk_densities({n: m.shape for n, m in masks.items()}, density, _alive_fractions(masks))
    return _keep_per_layer(scores, masks, _counts(densities, masks, density))


def smart_ratios(
    scores: Mapping[str, Tensor],
    masks: Masks,
    density: float,
    *,
    decay: Literal["quadratic", "linear"] = "quadratic",
    last_density: float = 0.3,
    rule: Literal["resnet", "vgg"] = "resnet",
) -> Masks:
    """Smart-ratio layer densities (:func:`smart_ratio_densities`), each layer pruned by its own threshold. Registered
    as ``"smart_ratios"`` (quadratic decay, the paper's choice), ``"smart_ratios_linear"`` and
    ``"smart_ratios_vgg"`` (quadratic decay, the authors' rule for VGG-style networks)."""
    densities = smart_ratio_densities({n: m.numel() for n, m in masks.items()}, density, decay, last_density,
                                      _alive_fractions(masks), rule)
    return _keep_per_layer(scores, masks, _counts(densities, masks, density))


register_allocation("smart_ratios")(smart_ratios)
register_allocation("smart_ratios_linear")(functools.partial(smart_ratios, decay="linear"))
register_allocation("smart_ratios_vgg")(functools.partial(smart_ratios, rule="vgg"))


def erk_densities(
    shapes: Mapping[str, Sequence[int]], density: float, max_density: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-layer densities of the Erdős–Rényi-Kernel distribution (Evci et al. 2020, RigL): ``density_l`` is
    proportional to ``sum(shape_l) / prod(shape_l)``, scaled so that ``density`` of all weights is kept; a layer whose
    density would exceed 1 (or its ``max_density``, e.g. the fraction of it still alive) is given that and the others
    are scaled again.

    >>> d = erk_densities({"a": (100, 10), "b": (10, 100), "c": (10, 10)}, 0.6)  # raw 0.11, 0.11, 0.2
    >>> {n: round(v, 4) for n, v in d.items()}  # c would get 0.2 * 1260 / 240 > 1: dense; a, b: 0.11 * 1160 / 220
    {'a': 0.58, 'b': 0.58, 'c': 1.0}
    """
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    return _scale_to_budget(raw, numel, density * sum(numel.values()), max_density or {})


def smart_ratio_densities(
    numel: Mapping[str, int],
    density: float,
    decay: Literal["quadratic", "linear"] = "quadratic",
    last_density: float = 0.3,
    max_density: Mapping[str, float] | None = None,
    rule: Literal["resnet", "vgg"] = "resnet",
) -> dict[str, float]:
    """Per-layer densities of the smart ratios of Su et al. 2020 ("Sanity-checking pruning methods: random tickets
    can win the jackpot"), for ``L`` layers in order (``numel``'s order, the last being the output layer).

    Layer ``l = 1 .. L-1`` keeps a density proportional to ``(L - l + 1)^2 + (L - l + 1)`` (``decay="quadratic"``) or
    to ``L - l + 1`` (``"linear"``); with ``rule="vgg"`` that is divided by ``l^2``, as the authors' code does for
    every network but ResNets (the paper states only the ``"resnet"`` rule). Densities are scaled so that ``density``
    of all weights is kept; the last layer keeps
    ``last_density`` (the paper's 30%). Layers whose density would exceed 1 (or their ``max_density``) are given that
    and the others scaled again, as in :func:`erk_densities` (the authors' code instead hands the excess to the next
    layers in order).

    >>> d = smart_ratio_densities({"a": 100, "b": 100, "c": 100, "out": 10}, 0.3)  # raw 20, 12, 6 for a, b, c
    >>> {n: round(v, 4) for n, v in d.items()}  # a: 20 * (93 - 3) / 3800
    {'a': 0.4737, 'b': 0.2842, 'c': 0.1421, 'out': 0.3}
    >>> d = smart_ratio_densities({"a": 100, "b": 100, "c": 100, "out": 10}, 0.3, rule="vgg")  # raw 20, 12/4, 6/9
    >>> {n: round(v, 4) for n, v in d.items()}
    {'a': 0.7606, 'b': 0.1141, 'c': 0.0254, 'out': 0.3}
    """
    if decay not in ("quadratic", "linear"):
        raise ValueError(f"decay={decay!r} is not allowed; expected 'quadratic' or 'linear'.")
    if rule not in ("resnet", "vgg"):
        raise ValueError(f"rule={rule!r} is not allowed; expected 'resnet' or 'vgg'.")
    limit = {n: (max_density or {}).get(n, 1.0) for n in numel}
    names = list(numel)
    if len(names) == 1:
        return {names[0]: min(density, limit[names[0]])}
    *body, last = names
    budget = density * sum(numel.values())
    # A body kept whole leaves the rest of the budget to the last layer.
    room = budget - sum(limit[n] * numel[n] for n in body)
    last_kept = min(max(last_density * numel[last], room), limit[last] * numel[last])
    if last_kept >= budget:
        raise ValueError(
            f"smart ratios keep {last_density:.0%} of the last layer {last!r} ({last_kept:.0f} weights), which is all"
            f" of the {budget:.0f} weights that density={density} allows: use a higher density or another allocation."
        )
    depth = len(names)
    raw = {n: (k * k + k if decay == "quadratic" else k) / (depth + 1 - k if rule == "vgg" else 1) ** 2
           for n, k in zip(body, range(depth, 1, -1))}  # k = L - l + 1, so l = L + 1 - k
    densities = _scale_to_budget(raw, {n: numel[n] for n in body}, budget - last_kept, limit)
    return {**densities, last: last_kept / numel[last]}


def _scale_to_budget(
    raw: Mapping[str, float], numel: Mapping[str, int], budget: float, limit: Mapping[str, float]
) -> dict[str, float]:
    """Densities ``scale * raw[n]`` keeping ``budget`` weights in all; a layer that would exceed its limit (default
    1) gets its limit. That only raises the scale of the others, so all such layers can be fixed at once (RigL fixes
    one at a time)."""
    cap = {n: limit.get(n, 1.0) for n in raw}
    full: set[str] = set()
    while True:
        free = [n for n in raw if n not in full]
        if not free:
            return cap
        scale = (budget - sum(cap[n] * numel[n] for n in full)) / sum(raw[n] * numel[n] for n in free)
        over = {n for n in free if scale * raw[n] > cap[n]}
        if not over:
            return {n: cap[n] if n in full else scale * raw[n] for n in raw}
        full |= over


def _alive_fractions(masks: Masks) -> dict[str, float]:
    return {n: float(m.sum()) / max(m.numel(), 1) for n, m in masks.items()}


def _counts(densities: Mapping[str, float], masks: Masks, density: float) -> dict[str, int]:
    """Whole numbers of weights per layer close to ``densities`` that add up to exactly ``density`` of all weights:
    floors, plus one more for the layers with the largest remainders."""
    exact = {n: densities[n] * masks[n].numel() for n in masks}
    counts = {n: min(math.floor(v), masks[n].numel()) for n, v in exact.items()}
    short = _count(density, masks.numel()) - sum(counts.values())
    for name in sorted(exact, key=lambda n: counts[n] - exact[n])[: max(short, 0)]:
        counts[name] += 1
    return counts


def _keep_per_layer(scores: Mapping[str, Tensor], masks: Masks, counts: Mapping[str, int]) -> Masks:
    """Each layer keeps its ``counts[name]`` highest-scoring live weights (fewer if fewer are alive)."""
    return Masks(
        {
            n: keep_top_k([s], min(counts[n], int(masks[n].sum())))[0]
            for n, s in zip(masks, _alive_scores(scores, masks))
        }
    )
