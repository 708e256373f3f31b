"""Schedules: the densities of successive pruning events."""

import pytest

from lt_lightning.pruning import geometric, one_shot, polynomial, synflow_exponential


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
