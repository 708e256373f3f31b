"""How the kept weights of a sparse network are spread over its layers at the start: ERK (Evci et al. 2020) or
uniform. Each is an allocation of :mod:`lt_lightning.pruning` (``"erk"``, ``"layerwise"``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["DISTRIBUTIONS", "check_distribution", "check_erk_fits", "erk_max_density"]

#: Layer-density distribution name -> the allocation that spreads the weights that way.
DISTRIBUTIONS = {"erk": "erk", "uniform": "layerwise"}


def check_distribution(name: object) -> str:
    """The allocation of distribution ``name``; ``ValueError`` listing the known ones."""
    if not isinstance(name, str) or name not in DISTRIBUTIONS:
        raise ValueError(f"distribution={name!r} is not allowed; expected one of {sorted(DISTRIBUTIONS)}.")
    return DISTRIBUTIONS[name]


def erk_max_density(shapes: Mapping[str, Sequence[int]]) -> float:
    """The highest overall density at which the Erdős–Rényi-Kernel distribution gives no layer a density above 1:
    ERK gives layer ``l`` the density ``d * N * r_l / S``, with ``r_l = sum(shape_l) / prod(shape_l)``, ``N`` the
    weights of all layers and ``S = sum_l r_l prod(shape_l)``.

    >>> round(erk_max_density({"a": (100, 10), "b": (10, 100), "c": (10, 10)}), 4)  # c: 240 / (2100 * 0.2)
    0.5714
    """
    numel = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    weighted = sum(raw[n] * numel[n] for n in shapes)
    return min(1.0, weighted / (sum(numel.values()) * max(raw.values())))


def check_erk_fits(shapes: Mapping[str, Sequence[int]], density: float) -> None:
    """Raise ``ValueError`` if ERK at ``density`` would give a layer a density above 1, naming the layer, the density
    ERK would give it and the highest density that fits.

    >>> check_erk_fits({"a": (100, 10), "b": (10, 100), "c": (10, 10)}, 0.6)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: density=0.6 is too high for distribution='erk': ERK would give layer 'c' (10x10) a density of 1.05, ...
    """
    limit = erk_max_density(shapes)
    if density <= limit:
        return
    numel = {n: math.prod(s) for n, s in shapes.items()}
    widest = max(shapes, key=lambda n: sum(shapes[n]) / numel[n])
    raise ValueError(f"density={density} is too high for distribution='erk': ERK would give layer {widest!r}"
                     f" ({'x'.join(map(str, shapes[widest]))}) a density of {density / limit:.3g}, above 1. ERK fits"
                     f" every layer up to density={limit:.4g}; use a lower density, distribution='uniform', keep_dense= for"
                     " that layer (dense, with density applying to the others), or allow_dense_layers=True (the"
                     " default, RigL's rule: such layers are kept dense and the others scaled up to keep density).")
