"""Allocations: ERK and smart ratios against their formulas; masks keep exactly the target number of weights."""

import math

import pytest
import torch

from lt_lightning.masks import Masks
from lt_lightning.pruning import ALLOCATIONS, erk_densities, smart_ratio_densities

SHAPES = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "conv3": (64, 32, 3, 3), "fc": (64, 10), "out": (10, 64)}


def _rigl_erk(shapes, density):
    """RigL's loop (sparse_utils.get_sparsities, erk_power_scale=1), one dense layer per pass."""
    dense, numel = set(), {n: math.prod(s) for n, s in shapes.items()}
    while True:
        rhs = sum(numel[n] * density for n in shapes if n not in dense) - sum(numel[n] * (1 - density) for n in dense)
        raw = {n: sum(s) / numel[n] for n, s in shapes.items() if n not in dense}
        eps = rhs / sum(raw[n] * numel[n] for n in raw)
        top = max(raw, key=raw.get)
        if raw[top] * eps <= 1:
            return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}
        dense.add(top)


@pytest.mark.parametrize("density", [0.5, 0.1, 0.01])
def test_erk_densities_match_the_formula(density):
    got = erk_densities(SHAPES, density)
    assert got == pytest.approx(_rigl_erk(SHAPES, density))
    numel = {n: math.prod(s) for n, s in SHAPES.items()}
    assert sum(got[n] * numel[n] for n in SHAPES) == pytest.approx(density * sum(numel.values()))
    free = [n for n in SHAPES if got[n] < 1]
    # Among layers that are not dense, density / (sum of dims / prod of dims) is one constant.
    ratios = [got[n] * numel[n] / sum(SHAPES[n]) for n in free]
    assert ratios == pytest.approx([ratios[0]] * len(ratios))
    if density == 0.5:
        assert got["conv1"] == 1.0 and got["fc"] == 1.0  # the small layers would exceed 1


@pytest.mark.parametrize("decay", ["quadratic", "linear"])
def test_smart_ratio_densities_match_the_paper(decay):
    numel = {n: math.prod(s) for n, s in SHAPES.items()}
    got = smart_ratio_densities(numel, 0.05, decay=decay)
    assert got["out"] == 0.3  # the last layer keeps 30%
    depth = len(numel)
    raw = {n: (k * k + k if decay == "quadratic" else k) for n, k in zip(list(numel)[:-1], range(depth, 1, -1))}
    assert raw["conv1"] == (30 if decay == "quadratic" else 5)  # l = 1: (L - l + 1)^2 + (L - l + 1), L = 5
    scale = (0.05 * sum(numel.values()) - 0.3 * numel["out"]) / sum(raw[n] * numel[n] for n in raw)
    assert {n: got[n] for n in raw} == pytest.approx({n: scale * raw[n] for n in raw})


def test_smart_ratios_set_dense_layers_that_would_exceed_one_and_refuse_an_impossible_last_layer():
    numel = {"a": 10, "b": 1000, "c": 1000, "out": 100}
    got = smart_ratio_densities(numel, 0.5)
    assert got["a"] == 1.0 and got["out"] == 0.3
    assert sum(got[n] * numel[n] for n in numel) == pytest.approx(0.5 * 2110)
    assert got["b"] / got["c"] == pytest.approx(12 / 6)
    with pytest.raises(ValueError, match=r"smart ratios keep 30% of the last layer 'out' \(30 weights\), which is all"
                                         r" of the 21 weights that density=0.01 allows"):
        smart_ratio_densities(numel, 0.01)
    with pytest.raises(ValueError, match="decay='cubic' is not allowed"):
        smart_ratio_densities(numel, 0.2, decay="cubic")


def test_smart_ratio_rules_against_hand_computed_densities():
    # L = 4 layers of 100, 100, 100 and 10 weights at density 0.3: 93 weights kept, 3 of them in the last layer.
    numel = {"a": 100, "b": 100, "c": 100, "out": 10}
    # ResNet rule: raw 4^2 + 4 = 20, 3^2 + 3 = 12, 2^2 + 2 = 6; 90 = s * 100 * 38, so s = 90 / 3800.
    assert smart_ratio_densities(numel, 0.3) == pytest.approx(
        {"a": 1800 / 3800, "b": 1080 / 3800, "c": 540 / 3800, "out": 0.3})
    # VGG rule, divided by l^2: raw 20 / 1, 12 / 4, 6 / 9; 90 = s * 100 * 71 / 3, so s = 270 / 7100.
    assert smart_ratio_densities(numel, 0.3, rule="vgg") == pytest.approx(
        {"a": 5400 / 7100, "b": 810 / 7100, "c": 180 / 7100, "out": 0.3})
    # Linear decay, VGG rule: raw 4, 3 / 4, 2 / 9; 90 = s * 100 * (144 + 27 + 8) / 36, so s = 3240 / 17900.
    assert smart_ratio_densities(numel, 0.3, decay="linear", rule="vgg") == pytest.approx(
        {"a": 4 * 3240 / 17900, "b": 0.75 * 3240 / 17900, "c": 2 / 9 * 3240 / 17900, "out": 0.3})
    # By name: floors 76, 11, 2 and 3 of 76.06, 11.41, 2.54 and 3; the one weight short goes to the largest remainder.
    masks = ALLOCATIONS["smart_ratios_vgg"]({n: torch.rand(k) for n, k in numel.items()},
                                            Masks({n: torch.ones(k, dtype=torch.bool) for n, k in numel.items()}),
                                            0.3)
    assert {n: int(m.sum()) for n, m in masks.items()} == {"a": 76, "b": 11, "c": 3, "out": 3}
    with pytest.raises(ValueError, match="rule='densenet' is not allowed; expected 'resnet' or 'vgg'"):
        smart_ratio_densities(numel, 0.3, rule="densenet")


@pytest.mark.parametrize("name", ["global", "layerwise", "erk", "smart_ratios", "smart_ratios_linear",
                                  "smart_ratios_vgg"])
def test_allocations_keep_the_target_and_never_revive(name):
    torch.manual_seed(0)
    scores = {n: torch.randn(s) for n, s in SHAPES.items()}
    before = Masks({n: torch.rand(s) > 0.2 for n, s in SHAPES.items()})
    density = 0.1
    masks = ALLOCATIONS[name](scores, before, density)
    assert all(bool((masks[n] <= before[n]).all()) for n in SHAPES)
    total = round(density * before.numel())
    assert abs(masks.kept() - total) <= (len(SHAPES) if name == "layerwise" else 0)
    if name == "erk":
        # fc would get more than its ~80% still alive: it keeps all of them, and the others share the rest.
        alive = before.layer_densities()
        assert erk_densities(SHAPES, density)["fc"] > alive["fc"]
        assert masks["fc"].sum() == before["fc"].sum()
        expected = erk_densities(SHAPES, density, max_density=alive)
        for n, d in masks.layer_densities().items():
            assert abs(d - expected[n]) * masks[n].numel() <= 1
    if name in ("global", "erk"):  # each layer keeps its highest-scoring live weights
        for n in SHAPES:
            kept, dropped = scores[n][masks[n]], scores[n][before[n] & ~masks[n]]
            assert kept.numel() == 0 or dropped.numel() == 0 or float(kept.min()) >= float(dropped.max())
