"""Is it a winning ticket? Verdicts on final metrics of a dense network, its tickets and their controls, over seeds.

A ticket at some density is **matching** when it trains to the dense network's accuracy within ``eps`` (Frankle et
al. 2020: 0.2 points), and **winning** when it is matching *and* beats every control (random re-initialization,
shuffled masks, random tickets, ...: :mod:`lt_lightning.controls`) at that density. With several seeds each verdict is
a statistical one, stated in :func:`compare`; with one seed it compares the single values.

Plain Python (``math`` and ``statistics``): the Student t distribution is computed here (:func:`student_t_cdf`,
:func:`student_t_quantile`) rather than taken from scipy, which lt-lightning does not depend on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

__all__ = ["compare", "lowest_matching_density", "student_t_cdf", "student_t_quantile"]

Row = dict[str, Any]


def compare(
    dense: Sequence[float],
    ticket: Mapping[float, Sequence[float]],
    controls: Mapping[str, Mapping[float, Sequence[float]]] | None = None,
    *,
    eps: float = 0.002,
    confidence: float = 0.95,
    higher_is_better: bool = True,
    ticket_steps: Mapping[float, Sequence[float]] | None = None,
    control_steps: Mapping[str, Mapping[float, Sequence[float]]] | None = None,
) -> list[Row]:
    """One row of plain data (JSON-serialisable) per ticket density, densest first, with the verdicts.

    ``dense`` holds the dense network's metric, one value per seed; ``ticket`` maps each density (fraction of the
    prunable weights kept, in ``(0, 1]``) to the ticket's values per seed, and ``controls`` maps a control's name to
    the same for that control. Values are accuracies in ``[0, 1]`` (``higher_is_better=True``); with
    ``higher_is_better=False`` they are errors or losses (any finite value; negate other higher-is-better scores).

    Each row holds ``density``, ``n`` (ticket seeds), ``ticket_mean``/``_std``/``_ci_low``/``_ci_high``, the same for
    ``dense_``, ``diff_dense_mean``/``_ci_low``/``_ci_high`` (ticket minus dense), ``matching``, ``winning`` and
    ``controls``: per control ``n``, ``mean``, ``std``, ``ci_low``, ``ci_high``, ``diff_mean``, ``diff_ci_low``,
    ``diff_ci_high`` (ticket minus control, paired by seed index), ``p_value`` and ``beats``. Intervals are two-sided
    at ``confidence`` (Student t); a std or interval of a single value is ``None``.

    - **matching**: with one value on either side, ``ticket_mean >= dense_mean - eps``. Otherwise the upper end of
      the Welch interval of ``ticket - dense`` is ``>= -eps``: the ticket is matching unless the seeds *show* it worse
      than dense by more than ``eps``. The mean alone flips with the noise of a few seeds; this rule is never
      stricter than it (a mean within ``eps`` is always matching), and the row's interval shows how sure it is.
    - **beats** (a control): with several seeds, a one-sided paired t-test of "the ticket is better", pairing seed
      ``i`` of the ticket with seed ``i`` of the control (the same counts are required), gives
      ``p_value < 1 - confidence``. With one seed (``p_value`` is ``None``): strictly better.
    - **winning**: matching and beating every control given at that density; ``None`` where none is given.
    - With ``ticket_steps`` and ``control_steps`` (e.g. early-stopping steps per seed, same shapes as the values),
      rows add ``ticket_steps_mean`` and per control ``steps_mean`` and ``learns_faster`` (a lower mean step;
      ``None`` where either side has no steps at that density).

    With ``higher_is_better=False`` "worse", "better" and the interval ends flip: matching is a lower interval end
    ``<= eps``, beating is being significantly lower.

    >>> rows = compare(dense=[0.981, 0.979, 0.980],
    ...                ticket={0.21: [0.983, 0.981, 0.982], 0.05: [0.95, 0.96, 0.955]},
    ...                controls={"reinit": {0.21: [0.97, 0.968, 0.971], 0.05: [0.90, 0.91, 0.905]}})
    >>> [(r["density"], r["matching"], r["winning"]) for r in rows]
    [(0.21, True, True), (0.05, False, False)]
    >>> round(rows[0]["controls"]["reinit"]["p_value"], 4)
    0.0015
    """
    if not isinstance(eps, Real) or isinstance(eps, bool) or not 0 <= eps < math.inf:
        raise ValueError(f"eps={eps!r} is not allowed; expected a finite number >= 0.")
    if not isinstance(confidence, Real) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is not allowed; expected a number in (0, 1).")
    sign = 1.0 if higher_is_better else -1.0
    kind = "accuracy" if higher_is_better else "any"
    dense_values = _values("dense", dense, kind)
    ticket_values = _by_density("ticket", ticket, kind)
    control_values = {name: _match("controls", name, _by_density(f"control {name!r}", values, kind),
                                   ticket_values)
                      for name, values in (controls or {}).items()}
    steps = _steps(ticket_steps, control_steps, ticket_values, control_values)
    dense_stats = _summary(dense_values, confidence)
    rows = []
    for density in sorted(ticket_values, reverse=True):
        values = ticket_values[density]
        row: Row = {"density": density, "n": len(values), **_prefixed("ticket_", _summary(values, confidence)),
                    "dense_n": len(dense_values), **_prefixed("dense_", dense_stats)}
        diff, low, high = _welch(values, dense_values, confidence)
        row.update(diff_dense_mean=diff, diff_dense_ci_low=low, diff_dense_ci_high=high)
        # The end of the interval on the "better" side: if even it is worse than dense by more than eps, not matching.
        best_case = diff if low is None else (high if higher_is_better else low)
        row["matching"] = sign * best_case >= -eps
        row["controls"] = {}
        for name, by_density in control_values.items():
            if density in by_density:
                row["controls"][name] = _versus(values, by_density[density], density, name, sign, confidence)
        row["winning"] = (row["matching"] and all(c["beats"] for c in row["controls"].values())
                          if row["controls"] else None)
        if steps is not None:
            ticket_step, by_control = steps
            row["ticket_steps_mean"] = _mean_or_none(ticket_step.get(density))
            for name, entry in row["controls"].items():
                entry["steps_mean"] = _mean_or_none(by_control.get(name, {}).get(density))
                known = entry["steps_mean"] is not None and row["ticket_steps_mean"] is not None
                entry["learns_faster"] = row["ticket_steps_mean"] < entry["steps_mean"] if known else None
        rows.append(row)
    return rows


def lowest_matching_density(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """The lowest density whose row is matching (denser rows need not all be), or ``None`` if none is.

    >>> lowest_matching_density([{"density": 0.5, "matching": True}, {"density": 0.2, "matching": True},
    ...                          {"density": 0.1, "matching": False}])
    0.2
    """
    matching = [row["density"] for row in rows if row["matching"]]
    return min(matching) if matching else None


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom.

    >>> round(student_t_cdf(2.0, 5), 6)
    0.94903
    """
    if not df > 0 or math.isinf(df):
        raise ValueError(f"df={df!r} is not allowed; expected a finite number > 0.")
    if math.isnan(t):
        raise ValueError("t is NaN.")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # P(|T| > |t|) = I_x(df / 2, 1 / 2) with x = df / (df + t^2).
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``t`` with ``student_t_cdf(t, df) == p``, for ``p`` in ``(0, 1)``, by bisection.

    >>> round(student_t_quantile(0.975, 2), 6)
    4.302653
    """
    if not 0 < p < 1:
        raise ValueError(f"p={p!r} is not allowed; expected a probability in (0, 1).")
    if p <= 0.5:
        return -student_t_quantile(1 - p, df) if p < 0.5 else 0.0
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, 2 * high
    while high - low > 1e-12 * max(1.0, high):
        mid = (low + high) / 2
        low, high = (mid, high) if student_t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Numerical Recipes, betai)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    # The fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float, max_iter: int = 10_000, tol: float = 1e-15) -> float:
    """Continued fraction of the incomplete beta function, by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < tol:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge for a={a}, b={b}, x={x}.")


def _summary(values: Sequence[float], confidence: float) -> dict[str, float | None]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = statistics.stdev(values)
    half = student_t_quantile((1 + confidence) / 2, len(values) - 1) * std / math.sqrt(len(values))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _prefixed(prefix: str, stats: Mapping[str, Any]) -> dict[str, Any]:
    return {prefix + key: value for key, value in stats.items()}


def _welch(a: Sequence[float], b: Sequence[float], confidence: float) -> tuple[float, float | None, float | None]:
    """Mean of ``a`` minus mean of ``b`` and its Welch interval (``None`` ends with a single value on either side)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = student_t_quantile((1 + confidence) / 2, df) * se
    return diff, diff - half, diff + half


def _versus(ticket: Sequence[float], control: Sequence[float], density: float, name: str, sign: float,
            confidence: float) -> dict[str, Any]:
    """A control's statistics at one density and the paired comparison with the ticket."""
    if len(control) != len(ticket):
        raise ValueError(
            f"at density {density}, control {name!r} has {len(control)} seeds and the ticket {len(ticket)}: pairing by"
            " seed needs the same number."
        )
    entry = _summary(control, confidence)
    diffs = [t - c for t, c in zip(ticket, control)]
    diff = _summary(diffs, confidence)
    entry.update(n=len(control), diff_mean=diff["mean"], diff_ci_low=diff["ci_low"], diff_ci_high=diff["ci_high"])
    if len(diffs) < 2:
        entry.update(p_value=None, beats=sign * diff["mean"] > 0)
        return entry
    gain = sign * diff["mean"]  # > 0: the ticket is better
    if diff["std"] == 0:  # identical differences: t is +-inf, or 0 when they are all 0
        p_value = 0.0 if gain > 0 else 1.0 if gain < 0 else 0.5
    else:
        p_value = 1.0 - student_t_cdf(gain / (diff["std"] / math.sqrt(len(diffs))), len(diffs) - 1)
    entry.update(p_value=p_value, beats=p_value < 1 - confidence)
    return entry


def _values(what: str, values: Any, kind: str) -> list[float]:
    """Check one list of per-seed values: a non-empty sequence of finite real numbers; ``kind`` "accuracy" must lie
    in [0, 1], "step" must be >= 0, "any" is any finite number."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{what}: expected a non-empty list of values, one per seed; got {values!r}.")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not a finite number.")
        if kind == "accuracy" and not 0 <= value <= 1:
            raise ValueError(
                f"{what}: {value!r} is not an accuracy in [0, 1] (98.1% is 0.981); for errors or losses pass"
                " higher_is_better=False."
            )
        if kind == "step" and value < 0:
            raise ValueError(f"{what}: {value!r} is not a step; expected a number >= 0.")
    return [float(v) for v in values]


def _by_density(what: str, by_density: Any, kind: str) -> dict[float, list[float]]:
    if not isinstance(by_density, Mapping) or not by_density:
        raise ValueError(f"{what}: expected a non-empty mapping density -> values per seed; got {by_density!r}.")
    out = {}
    for density, values in by_density.items():
        if isinstance(density, bool) or not isinstance(density, Real) or not 0 < density <= 1:
            raise ValueError(f"{what}: density {density!r} is not allowed; expected a number in (0, 1].")
        out[float(density)] = _values(f"{what} at density {density}", values, kind)
    return out


def _match(what: str, name: str, by_density: dict[float, Any], ticket: Mapping[float, Any]) -> dict[float, Any]:
    """Re-key ``by_density`` onto the ticket's densities (equal up to float rounding, e.g. ``0.8 ** 3``)."""
    out = {}
    for density, values in by_density.items():
        same = [d for d in ticket if math.isclose(d, density, rel_tol=1e-9, abs_tol=1e-12)]
        if not same:
            raise ValueError(f"{what} {name!r}: density {density} is not one of the ticket's: {sorted(ticket)}.")
        out[same[0]] = values
    return out


def _steps(
    ticket_steps: Mapping[float, Sequence[float]] | None,
    control_steps: Mapping[str, Mapping[float, Sequence[float]]] | None,
    ticket: Mapping[float, Any],
    controls: Mapping[str, Any],
) -> tuple[dict[float, list[float]], dict[str, dict[float, list[float]]]] | None:
    if ticket_steps is None and control_steps is None:
        return None
    if ticket_steps is None:
        raise ValueError("control_steps needs ticket_steps: the ticket's steps are what the controls' are compared to.")
    unknown = sorted(set(control_steps or {}) - set(controls))
    if unknown:
        raise ValueError(f"control_steps names controls without values: {unknown}; controls: {sorted(controls)}.")
    mine = _match("ticket_steps", "ticket", _by_density("ticket_steps", ticket_steps, "step"), ticket)
    theirs = {name: _match("control_steps", name, _by_density(f"control_steps {name!r}", by, "step"), ticket)
              for name, by in (control_steps or {}).items()}
    return mine, theirs


def _mean_or_none(values: Sequence[float] | None) -> float | None:
    return statistics.fmean(values) if values is not None else None
