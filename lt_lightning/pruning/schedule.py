"""Pruning schedules: the density to reach at each pruning event.

IMP and gradual pruning ask for the density after a round (:func:`geometric`) or at a training step
(:func:`polynomial`); pruning at initialization asks for the densities of its successive iterations
(:func:`one_shot`, :func:`synflow_exponential`).
"""

from __future__ import annotations

import math

from lt_lightning.validation import check_density, check_fraction, check_int

__all__ = ["check_density", "check_fraction", "geometric", "one_shot", "polynomial", "rounds_to_reach",
           "synflow_exponential"]


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


def one_shot(density: float) -> list[float]:
    """Prune once, straight to ``density``.

    >>> one_shot(0.1)
    [0.1]
    """
    check_density("density", density)
    return [density]


def synflow_exponential(density: float, iterations: int) -> list[float]:
    """The densities of SynFlow's iterative pruning (Tanaka et al. 2020): ``density ** (k / n)`` for ``k = 1 .. n``,
    the same fraction of the remaining weights pruned at each of the ``n = iterations`` steps.

    >>> [round(d, 4) for d in synflow_exponential(0.01, 4)]
    [0.3162, 0.1, 0.0316, 0.01]
    """
    check_density("density", density)
    check_int("iterations", iterations, minimum=1)
    return [density ** (k / iterations) for k in range(1, iterations + 1)]


def polynomial(
    step: int, final_density: float, begin_step: int, end_step: int, initial_density: float = 1.0, frequency: int = 1
) -> float:
    """Gradual pruning (Zhu & Gupta 2017) in densities: ``d_f + (d_i - d_f) * (1 - (t - t0) / (n * dt)) ** 3``, with
    ``t0 = begin_step``, ``n * dt = end_step - begin_step`` and pruning events every ``dt = frequency`` steps: the
    density at ``step`` is that of the last event at or before it (``initial_density`` before ``begin_step``,
    ``final_density`` from ``end_step`` on).

    >>> [round(polynomial(t, 0.1, begin_step=100, end_step=200, frequency=50), 4) for t in (0, 100, 149, 150, 200, 300)]
    [1.0, 1.0, 1.0, 0.2125, 0.1, 0.1]
    """
    check_density("final_density", final_density)
    check_density("initial_density", initial_density)
    if final_density > initial_density:
        raise ValueError(f"final_density={final_density} is above initial_density={initial_density}: pruning only"
                         " lowers the density.")
    check_int("frequency", frequency, minimum=1)
    check_int("begin_step", begin_step)
    if not isinstance(end_step, int) or end_step <= begin_step or (end_step - begin_step) % frequency:
        raise ValueError(f"end_step={end_step!r} is not allowed; expected begin_step ({begin_step}) plus a positive"
                         f" multiple of frequency ({frequency}).")
    event = begin_step + (min(max(step, begin_step), end_step) - begin_step) // frequency * frequency
    progress = (event - begin_step) / (end_step - begin_step)
    return final_density + (initial_density - final_density) * (1.0 - progress) ** 3
