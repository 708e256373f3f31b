"""Schedules: the densities of successive pruning events."""

import pytest

from lt_lightning.dynamic import gmp_density
from lt_lightning.pruning import SCHEDULES, geometric, one_shot, polynomial, register_schedule, synflow_exponential
from lt_lightning.pruning.schedule import check_schedule
from lt_lightning.supermask import progressive_density


@pytest.mark.parametrize("name", ["geometric", "cubic", "linear"])
def test_every_schedule_runs_from_initial_to_final_and_only_falls(name):
    path = SCHEDULES[name]
    assert path(0.0, 0.8, 0.05) == pytest.approx(0.8) and path(1.0, 0.8, 0.05) == pytest.approx(0.05)
    values = [path(k / 50, 0.8, 0.05) for k in range(51)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_the_loose_schedules_are_paths_of_the_registry():
    # SynFlow's iterations: geometric; gradual pruning and progressive supermasks: cubic, to the last digit.
    assert synflow_exponential(0.01, 7) == [SCHEDULES["geometric"](k / 7, 1.0, 0.01) for k in range(1, 8)]
    assert [polynomial(t, 0.1, 100, 200, 0.9, frequency=20) for t in (100, 140, 150, 200)] == [
        SCHEDULES["cubic"](p, 0.9, 0.1) for p in (0.0, 0.4, 0.4, 1.0)]
    assert [gmp_density(t, 1.0, 0.1, 100, 200) for t in (0, 130, 250)] == [
        SCHEDULES["cubic"](p, 1.0, 0.1) for p in (0.0, 0.3, 1.0)]
    assert [progressive_density(0.1, e, 4) for e in range(4)] == [SCHEDULES["cubic"](e / 4, 0.5, 0.1) for e in range(4)]
    # The rounds of IMP's default: (1 - p) ** r, the geometric path to (1 - p) ** R.
    assert [SCHEDULES["geometric"](r / 5, 1.0, geometric(0.2, 5)) for r in range(6)] == pytest.approx(
        [0.8 ** r for r in range(6)], rel=1e-12)


def test_schedules_are_chosen_by_name_from_one_registry():
    with pytest.raises(ValueError, match=r"unknown schedule 'cubical'; known schedules: \['cubic', 'geometric', 'linear'"):
        check_schedule("cubical")
    with pytest.raises(ValueError, match="a schedule named 'linear' is already registered"):
        register_schedule("linear")(lambda progress, initial, final: final)


def test_one_shot_and_synflow_exponential():
    assert one_shot(0.2) == [0.2]
    densities = synflow_exponential(0.001, 100)
    assert len(densities) == 100 and densities[-1] == pytest.approx(0.001)
    assert densities[49] == pytest.approx(0.001 ** 0.5)
    # The same fraction of the remaining weights goes at every step.
    ratios = [b / a for a, b in zip([1.0, *densities], densities)]
    assert ratios == pytest.approx([0.001 ** 0.01] * 100)
    assert synflow_exponential(1.0, 3) == [1.0, 1.0, 1.0]


def test_polynomial_is_zhu_and_gupta_in_densities():
    s_i, s_f, t0, n, dt = 0.0, 0.9, 1000, 10, 200
    for t in range(t0, t0 + n * dt + 1, dt):
        sparsity = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3  # Zhu & Gupta 2017, eq. 1
        assert 1 - polynomial(t, 1 - s_f, t0, t0 + n * dt, 1 - s_i, frequency=dt) == pytest.approx(sparsity)
    # Between events the density is the last event's; before t0 the initial one, after the end the final one.
    assert polynomial(t0 + dt + 5, 0.1, t0, t0 + n * dt, frequency=dt) == polynomial(t0 + dt, 0.1, t0, t0 + n * dt)
    assert polynomial(0, 0.1, t0, t0 + n * dt) == 1.0
    assert polynomial(10**6, 0.1, t0, t0 + n * dt) == pytest.approx(0.1)
    values = [polynomial(t, 0.05, 0, 100, 0.8) for t in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: one_shot(0.0), r"density=0.0 is not allowed; a density is a fraction of weights kept, in \(0, 1\]"),
    (lambda: one_shot(1.5), r"density=1.5 is not allowed"),
    (lambda: synflow_exponential(0.1, 0), r"iterations=0 is not allowed; expected an int >= 1"),
    (lambda: synflow_exponential(-0.1, 10), r"density=-0.1 is not allowed"),
    (lambda: polynomial(0, 0.5, 0, 100, initial_density=0.4), r"final_density=0.5 is above initial_density=0.4"),
    (lambda: polynomial(0, 0.1, 50, 50), r"end_step=50 is not allowed; expected begin_step \(50\) plus a positive"),
    (lambda: polynomial(0, 0.1, 0, 100, frequency=30), r"end_step=100 is not allowed.*multiple of frequency \(30\)"),
    (lambda: polynomial(0, 0.1, -1, 100), r"begin_step=-1 is not allowed"),
    (lambda: geometric(1.0, 2), r"fraction=1.0 is not allowed"),
])
def test_bad_schedule_arguments(call, needle):
    with pytest.raises(ValueError, match=needle):
        call()
