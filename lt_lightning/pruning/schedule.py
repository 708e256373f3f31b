"""Pruning schedules: the density to reach at each pruning event."""

from __future__ import annotations

import math


def check_fraction(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 < value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number strictly between 0 and 1.")


def geometric(fraction: float, rounds: int) -> float:
    """Density after ``rounds`` rounds that each prune ``fraction`` of the remaining weights: ``(1 - p) ** r``.

    >>> round(geometric(0.2, 3), 3)
    0.512
    """
    check_fraction("fraction", fraction)
    return (1.0 - fraction) ** rounds


def rounds_to_reach(fraction: float, density: float) -> int:
    """Fewest geometric rounds after which the density is at most ``density``.

    >>> rounds_to_reach(0.2, 0.5)
    4
    """
    check_fraction("fraction", fraction)
    check_fraction("density", density)
    # The small tolerance keeps an exact power, e.g. 0.8**2 = 0.64, from rounding up to one more round.
    return max(1, math.ceil(math.log(density) / math.log(1.0 - fraction) - 1e-9))
