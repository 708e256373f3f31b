"""One pruning event: score the weights, then allocate the surviving ones."""

from __future__ import annotations

from collections.abc import Mapping

from lt_lightning.masks import Masks
from lt_lightning.pruning.allocation import ALLOCATIONS, check_allocation, layerwise
from lt_lightning.pruning.scores import ScoreContext, compute_scores


def check_density(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 < value <= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name}={value!r} is not allowed; a density is a fraction of weights kept, in (0, 1].")


def prune(
    context: ScoreContext,
    density: float,
    *,
    score: str = "magnitude",
    allocation: str = "global",
    layer_density: Mapping[str, float] | None = None,
) -> Masks:
    """New masks keeping ``density`` of ``context.masks``' weights, chosen by ``score`` and ``allocation``.

    Parameters named in ``layer_density`` are pruned on their own to the density given there; ``density`` applies to
    the others. Weights pruned before stay pruned.

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    >>> masks = prune(ScoreContext(net, Masks.dense(net, ["0.weight", "1.weight"])), 0.5,
    ...               layer_density={"1.weight": 0.75})
    >>> masks.layer_densities()
    {'0.weight': 0.5, '1.weight': 0.75}
    """
    check_density("density", density)
    check_allocation(allocation)
    explicit = dict(layer_density or {})
    unknown = sorted(set(explicit) - set(context.masks))
    if unknown:
        raise ValueError(f"layer_density names parameters that are not masked: {unknown}; masked: {list(context.masks)}.")
    for name, value in explicit.items():
        check_density(f"layer_density[{name!r}]", value)
    scores = compute_scores(score, context)
    masks = context.masks
    new: dict = {}
    rest = [n for n in masks if n not in explicit]
    if rest:
        new.update(ALLOCATIONS[allocation]({n: scores[n] for n in rest}, Masks({n: masks[n] for n in rest}), density))
    for name, value in explicit.items():
        new.update(layerwise({name: scores[name]}, Masks({name: masks[name]}), value))
    return Masks({n: new[n] for n in masks})
