"""Mask updaters: exact per-layer counts, RigL drops the smallest weights and grows the largest gradients, SET is
seeded, grown positions are exactly the newly kept ones."""

import pytest
import torch

from lt_lightning.dynamic import NEEDS_GRADIENTS, UPDATERS, drop_and_grow, mask_changes, register_updater
from lt_lightning.masks import Masks

SHAPES = {"a": (20, 30), "b": (30, 10), "c": (10, 4)}


def _case(seed=0, density=0.3):
    g = torch.Generator().manual_seed(seed)
    masks = Masks({n: torch.rand(s, generator=g) < density for n, s in SHAPES.items()})
    weights = {n: torch.randn(s, generator=g) * masks[n] for n, s in SHAPES.items()}
    grads = {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}
    return masks, weights, grads


@pytest.mark.parametrize("name", ["rigl", "set"])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.3, 0.5, 1.0])
def test_each_layer_keeps_exactly_its_count_and_changes_int_fraction_of_it(name, fraction):
    masks, weights, grads = _case()
    new, grown = UPDATERS[name](masks, weights, grads, fraction, torch.Generator().manual_seed(1))
    changes = mask_changes(masks, new)
    for n, mask in masks.items():
        kept = int(mask.sum())
        assert int(new[n].sum()) == kept, n
        assert torch.equal(grown[n], new[n] & ~mask), n
        assert changes["dropped"][n] == changes["grown"][n] == int(grown[n].sum()) <= int(fraction * kept), n
    if 0 < fraction:
        assert sum(changes["grown"].values()) > 0


def test_rigl_drops_the_smallest_kept_weights_and_grows_the_largest_gradients():
    masks, weights, grads = _case()
    new, grown = UPDATERS["rigl"](masks, weights, grads, 0.3, torch.Generator())
    for n, mask in masks.items():
        k = int(0.3 * int(mask.sum()))
        magnitude, gradient = weights[n].abs(), grads[n].abs()
        # What left the mask is among the k smallest kept weights (some of those may have been grown back).
        kth_smallest = magnitude[mask].sort().values[k - 1]
        assert bool((magnitude[mask & ~new[n]] <= kth_smallest).all()), n
        # Grown where |grad| is largest: every grown position beats every pruned position left out.
        assert grown[n].any(), n
        assert float(gradient[grown[n]].min()) >= float(gradient[~mask & ~new[n]].max()), n


def test_rigl_can_grow_back_what_it_dropped_without_resetting_it():
    masks = Masks({"w": torch.tensor([True, True, False])})
    weights = {"w": torch.tensor([0.1, 1.0, 0.0])}
    grads = {"w": torch.tensor([5.0, 0.0, 1.0])}  # the dropped weight has the largest gradient
    new, grown = UPDATERS["rigl"](masks, weights, grads, 0.5, torch.Generator())
    assert new == masks and not grown["w"].any()


def test_set_grows_at_random_positions_reproducibly_from_the_generator():
    masks, weights, _ = _case()
    draw = [UPDATERS["set"](masks, weights, None, 0.5, torch.Generator().manual_seed(s))[0] for s in (7, 7, 8)]
    assert draw[0] == draw[1] and draw[0] != draw[2]


def test_rigl_without_gradients_and_fractions_outside_0_1_are_refused():
    masks, weights, _ = _case()
    with pytest.raises(ValueError, match="grows by the dense gradients; grads is None"):
        UPDATERS["rigl"](masks, weights, None, 0.3, torch.Generator())
    with pytest.raises(ValueError, match=r"fraction=1.5 is not allowed; expected a number in \[0, 1\]"):
        drop_and_grow(masks, weights, weights, 1.5)


def test_low_precision_weights():
    masks, weights, grads = _case()
    new, _ = UPDATERS["rigl"](masks, {n: w.bfloat16() for n, w in weights.items()}, grads, 0.3, torch.Generator())
    assert new.layer_densities() == masks.layer_densities()


def test_registry():
    assert "rigl" in NEEDS_GRADIENTS and "set" not in NEEDS_GRADIENTS
    with pytest.raises(ValueError, match="a mask updater named 'rigl' is already registered"):
        register_updater("rigl")(lambda *args: None)
    with pytest.raises(ValueError, match=r"unknown mask updater 'rigl2'; known mask updaters: \['rigl', 'set'"):
        UPDATERS.check("rigl2")
