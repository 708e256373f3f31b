"""RigL's update steps and drop fraction, gradual magnitude pruning's events and cubic densities, ERK's limit."""

import math

import pytest

from lt_lightning.dynamic import (
    check_distribution,
    check_erk_fits,
    cosine_drop_fraction,
    erk_max_density,
    gmp_density,
    is_gmp_event,
    is_update_step,
)
from lt_lightning.pruning import erk_densities


def test_update_steps_every_n_before_stop():
    steps = [t for t in range(1000) if is_update_step(t, 100, 750)]
    assert steps == [100, 200, 300, 400, 500, 600, 700]
    assert [t for t in range(10) if is_update_step(t, 1, 4)] == [1, 2, 3]


def test_cosine_drop_fraction_decays_from_the_fraction_to_zero():
    values = [cosine_drop_fraction(t, 0.3, 750) for t in range(0, 800, 50)]
    assert values[0] == 0.3 and values[-1] == 0.0 and math.isclose(cosine_drop_fraction(375, 0.3, 750), 0.15)
    assert all(a > b for a, b in zip(values, values[1:16])) and values[15:] == [0.0]


def test_gmp_events_and_cubic_densities():
    events = [t for t in range(300) if is_gmp_event(t, 50, 175, 25)]
    assert events == [75, 100, 125, 150, 175]
    densities = [gmp_density(t, 1.0, 0.1, 50, 175) for t in [50, *events]]
    assert densities[0] == 1.0 and densities[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(densities, densities[1:]))
    # Zhu & Gupta's formula, in sparsity, at an event: s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3.
    sparsity = 0.9 + (0.0 - 0.9) * (1 - (100 - 50) / 125) ** 3
    assert gmp_density(100, 1.0, 0.1, 50, 175) == pytest.approx(1 - sparsity)
    assert gmp_density(10, 0.8, 0.1, 50, 175) == 0.8 and gmp_density(999, 0.8, 0.1, 50, 175) == pytest.approx(0.1)


SHAPES = {"in": (64, 32), "hidden": (32, 16), "out": (16, 10)}


def test_erk_max_density_is_where_erk_starts_to_cap_a_layer():
    limit = erk_max_density(SHAPES)
    below = erk_densities(SHAPES, limit * 0.999)
    above = erk_densities(SHAPES, min(limit * 1.05, 1.0))
    assert max(below.values()) < 1.0 and max(above.values()) == 1.0
    check_erk_fits(SHAPES, limit * 0.999)
    with pytest.raises(ValueError, match=r"density=0.5 is too high for distribution='erk': ERK would give layer 'out'"
                                         r" \(16x10\) a density of 1.3, above 1. ERK fits every layer up to"
                                         r" density=0.3846"):
        check_erk_fits(SHAPES, 0.5)


def test_distribution_names():
    assert check_distribution("erk") == "erk" and check_distribution("uniform") == "layerwise"
    with pytest.raises(ValueError, match=r"distribution='ERK' is not allowed; expected one of \['erk', 'uniform'\]"):
        check_distribution("ERK")
