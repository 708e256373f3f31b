"""When masks change during training, and by how much: RigL's update steps and cosine-decaying drop fraction, and the
pruning events of gradual magnitude pruning (Zhu & Gupta 2017) along their cubic schedule."""

from __future__ import annotations

import math

from lt_lightning.pruning.schedule import SCHEDULES

__all__ = ["cosine_drop_fraction", "gmp_density", "is_gmp_event", "is_update_step"]


def is_update_step(step: int, every: int, stop_step: int) -> bool:
    """Whether the masks are updated after ``step`` optimizer steps: every ``every`` steps, before ``stop_step``.

    >>> [t for t in range(0, 400, 50) if is_update_step(t, 100, 300)]
    [100, 200]
    """
    return 0 < step < stop_step and step % every == 0


def cosine_drop_fraction(step: int, drop_fraction: float, stop_step: int) -> float:
    """RigL's fraction of each layer's kept weights dropped (and regrown) at ``step``: ``drop_fraction`` decayed by a
    cosine to zero at ``stop_step``, ``drop_fraction * (1 + cos(pi * step / stop_step)) / 2``.

    >>> [round(cosine_drop_fraction(t, 0.3, 100), 4) for t in (0, 25, 50, 100)]
    [0.3, 0.2561, 0.15, 0.0]
    """
    return drop_fraction * (1.0 + math.cos(math.pi * min(step, stop_step) / stop_step)) / 2.0


def is_gmp_event(step: int, start: int, end: int, every: int) -> bool:
    """Whether gradual pruning prunes after ``step`` optimizer steps: every ``every`` steps after ``start``, and at
    ``end`` (the density at ``start`` is the initial one, in force from the beginning).

    >>> [t for t in range(0, 100) if is_gmp_event(t, 10, 45, 10)]
    [20, 30, 40, 45]
    """
    return start < step <= end and ((step - start) % every == 0 or step == end)


def gmp_density(step: int, initial: float, final: float, start: int, end: int, schedule: str = "cubic") -> float:
    """The density at ``step`` on the path ``schedule`` (``lt_lightning.pruning.SCHEDULES``) from ``initial`` at
    ``start`` to ``final`` at ``end``, ``initial`` before and ``final`` after; by default Zhu & Gupta's cubic,
    ``final + (initial - final) * (1 - (step - start) / (end - start)) ** 3``
    (:func:`lt_lightning.pruning.polynomial` at every step).

    >>> [round(gmp_density(t, 1.0, 0.1, 100, 200), 4) for t in (0, 100, 150, 200, 300)]
    [1.0, 1.0, 0.2125, 0.1, 0.1]
    >>> round(gmp_density(150, 1.0, 0.1, 100, 200, schedule="linear"), 4)
    0.55
    """
    return SCHEDULES[schedule]((min(max(step, start), end) - start) / (end - start), initial, final)
