"""Pruning schedules: the density to reach at each pruning event.

One registry, :data:`SCHEDULES`, holds the paths a density takes from ``initial`` to ``final`` as the progress of
the pruning runs from 0 to 1; every schedule takes its path from there by name: IMP's rounds
(``IMPCallback(schedule=...)``, ``"geometric"`` by default), gradual pruning's steps (``GMPCallback(schedule=...)``,
``"cubic"`` by default, :func:`polynomial`), supermasks' progressive epochs (``"cubic"``) and SynFlow's iterations
(``"geometric"``). Pruning at initialization asks for the densities of its successive iterations (:func:`one_shot`,
:func:`synflow_exponential`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lt_lightning.registry import Registry
from lt_lightning.validation import check_density, check_fraction, check_int

__all__ = ["SCHEDULES", "check_density", "check_fraction", "check_schedule", "geometric", "one_shot", "polynomial",
           "register_schedule", "rounds_to_reach", "synflow_exponential"]

#: ``schedule(progress, initial, final) -> density``: the density when ``progress`` (in [0, 1]) of the pruning is
#: done, ``initial`` at 0 and ``final`` at 1.
ScheduleFn = Callable[[float, float, float], float]
SCHEDULES: Registry[ScheduleFn] = Registry("schedule")


def register_schedule(name: str) -> Callable[[ScheduleFn], ScheduleFn]:
    """Register ``schedule(progress, initial, final) -> density`` under ``name``; ``IMPCallback`` and
    ``GMPCallback`` can then choose it by name (``schedule=name``).

    >>> @register_schedule("step_down")
    ... def step_down(progress, initial, final):
    ...     return initial if progress < 1 else final
    >>> SCHEDULES["step_down"](0.5, 1.0, 0.1)
    1.0
    >>> del SCHEDULES["step_down"]
    """
    return SCHEDULES.register(name)


check_schedule = SCHEDULES.check


@register_schedule("geometric")
def geometric_path(progress: float, initial: float, final: float) -> float:
    """The same fraction of the remaining weights pruned per unit of progress: ``initial * (final / initial) **
    progress`` (IMP's rounds of ``pruning_fraction``, SynFlow's iterations).

    >>> round(geometric_path(0.5, 1.0, 0.64), 4)
    0.8
    """
    return initial * (final / initial) ** progress


@register_schedule("cubic")
def cubic_path(progress: float, initial: float, final: float) -> float:
    """Zhu & Gupta's (2017) cubic in densities: ``final + (initial - final) * (1 - progress) ** 3``, pruning fast
    while many weights are redundant and slowly near the end (GMP, progressive supermasks).

    >>> round(cubic_path(0.5, 1.0, 0.1), 4)
    0.2125
    """
    return final + (initial - final) * (1.0 - progress) ** 3


@register_schedule("linear")
def linear_path(progress: float, initial: float, final: float) -> float:
    """The same share of the weights pruned per unit of progress: ``initial + (final - initial) * progress``.

    >>> round(linear_path(0.5, 1.0, 0.1), 4)
    0.55
    """
    return initial + (final - initial) * progress


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
    return [geometric_path(k / iterations, 1.0, density) for k in range(1, iterations + 1)]


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
    return cubic_path((event - begin_step) / (end_step - begin_step), initial_density, final_density)
