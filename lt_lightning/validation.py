"""Argument checks shared by every callback and core function: each raises ``ValueError`` naming the argument, the
value and what is allowed, before anything trains.

>>> check_int("rounds", 0, minimum=1)
Traceback (most recent call last):
ValueError: rounds=0 is not allowed; expected an int >= 1.
>>> check_seed("seed", 2**32)
Traceback (most recent call last):
ValueError: seed=4294967296 is not allowed; expected an int in [0, 2**32) (as seed_everything takes).

One seed range everywhere, ``[0, 2**32)``: it is the range ``seed_everything`` takes, so one number can seed a fit
and a callback alike; and torch's CPU generator keeps only the low 32 bits of a seed (``manual_seed(1)`` and
``manual_seed(1 + 2**32)`` draw the same numbers), so larger seeds would silently repeat smaller ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from numbers import Real
from typing import Any, cast

from lt_lightning.step import Step, StepLike

#: Seeds are ints in ``[0, SEED_RANGE)``; see the module docstring for why.
SEED_RANGE = 2**32


def check_int(name: str, value: Any, minimum: int = 0, why: str | None = None) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``; ``why`` says what it counts.

    >>> check_int("window", 0, minimum=1, why="consecutive checks below distance")
    Traceback (most recent call last):
    ValueError: window=0 is not allowed; expected an int >= 1 (consecutive checks below distance).
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {minimum}"
                         + (f" ({why})." if why else "."))
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False`` (not ``1``, not ``"yes"``).

    >>> check_bool("save_tickets", "yes")
    Traceback (most recent call last):
    ValueError: save_tickets='yes' is not allowed; expected a bool.
    """
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected a bool.")
    return value


def check_fraction(name: str, value: Any) -> float:
    """``value`` if it is a number strictly between 0 and 1 (a pruning fraction, a fraction of training, ...).

    >>> check_fraction("pruning_fraction", 1.0)
    Traceback (most recent call last):
    ValueError: pruning_fraction=1.0 is not allowed; expected a number strictly between 0 and 1.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < cast(float, value) < 1.0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number strictly between 0 and 1.")
    return float(value)


def check_density(name: str, value: Any) -> float:
    """``value`` if it is a density: a fraction of weights kept, in ``(0, 1]``.

    >>> check_density("density", 0)
    Traceback (most recent call last):
    ValueError: density=0 is not allowed; a density is a fraction of weights kept, in (0, 1].
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < cast(float, value) <= 1.0:
        raise ValueError(f"{name}={value!r} is not allowed; a density is a fraction of weights kept, in (0, 1].")
    return float(value)


def check_seed(name: str, value: Any) -> int:
    """``value`` if it is an int in ``[0, 2**32)``, the one seed range of lt-lightning (module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_RANGE:
        raise ValueError(f"{name}={value!r} is not allowed; expected an int in [0, 2**32) (as seed_everything takes).")
    return value


def check_regex(name: str, pattern: Any) -> re.Pattern[str]:
    """``pattern`` compiled; ``ValueError`` naming ``name`` if it is not a valid regex.

    >>> check_regex("exclude", "out[")
    Traceback (most recent call last):
    ValueError: exclude='out[' is not a valid regex: unterminated character set at position 3.
    """
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as err:
        raise ValueError(f"{name}={pattern!r} is not a valid regex: {err}.") from err


def check_step(name: str, value: StepLike, nonzero: bool = False) -> Step:
    """``value`` read as a :class:`~lt_lightning.step.Step` (``100``, ``"500it"``, ``"2ep"``, ``"1ep50it"``);
    ``nonzero``: it must be at least one optimizer step (an interval).

    >>> check_step("every", "0it", nonzero=True)
    Traceback (most recent call last):
    ValueError: every='0it' is not allowed; expected at least one optimizer step, e.g. 100, '500it' or '1ep'.
    """
    step = Step.parse(value)
    if nonzero and step == Step():
        raise ValueError(f"{name}={value!r} is not allowed; expected at least one optimizer step, e.g. 100, '500it'"
                         " or '1ep'.")
    return step


def check_selection(include: Any = None, exclude: Any = None, types: Any = (), keep_dense: Any = None) -> tuple[str, ...]:
    """The argument group that chooses prunable parameters, as every callback that prunes takes it: ``include``,
    ``exclude`` and ``keep_dense`` regexes (or ``None``) and ``types``, a list of class names. Returns ``types`` as a
    tuple.

    >>> check_selection(types="Linear")
    Traceback (most recent call last):
    ValueError: types='Linear' is not allowed; expected a list of class names, e.g. ['Linear'].
    """
    for name, pattern in (("include", include), ("exclude", exclude), ("keep_dense", keep_dense)):
        if pattern is not None:
            check_regex(name, pattern)
    if isinstance(types, str) or not isinstance(types, Sequence) or not all(isinstance(t, str) for t in types):
        raise ValueError(f"types={types!r} is not allowed; expected a list of class names, e.g. ['Linear'].")
    return tuple(types)
