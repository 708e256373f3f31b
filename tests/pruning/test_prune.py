"""prune(): keep_dense, explicit layer densities, the layer collapse guard, and iterative pruning."""

import warnings

import pytest
import torch
from torch import nn

from lt_lightning.masks import Masks
from lt_lightning.pruning import (
    LayerCollapseWarning,
    ScoreContext,
    prune,
    prune_iteratively,
    synflow_exponential,
)

NAMES = ["0.weight", "2.weight", "4.weight"]


def tiny_middle_layer_net():
    """An MLP whose middle layer's weights are 1000x smaller than the others: global magnitude prunes it first.
    (The output layer gets the first layer's weight range, so that only the middle layer collapses.)"""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(100, 300), nn.ReLU(), nn.Linear(300, 300), nn.ReLU(), nn.Linear(300, 10))
    with torch.no_grad():
        net[2].weight.mul_(1e-3)
        net[4].weight.mul_(3**0.5)  # U(-1/sqrt(300), .) becomes U(-0.1, 0.1), like the first layer
    return net


def test_guard_keeps_every_layer_at_99_9_percent_sparsity_and_reports_it():
    net = tiny_middle_layer_net()
    context = ScoreContext(net, Masks.dense(net, NAMES))
    total = round(0.001 * context.masks.numel())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the naive run must not warn
        naive = prune(context, 0.001, allow_layer_collapse=True)
    assert naive.kept() == total and int(naive["2.weight"].sum()) == 0  # layer collapse
    assert int(naive["0.weight"].sum()) > 0 and int(naive["4.weight"].sum()) > 0

    with pytest.warns(LayerCollapseWarning, match=r"layer collapse guard saved \['2.weight'\]: the allocation kept"
                                                  r" \{'2.weight': 0\} of their weights, fewer than min_kept=1"):
        guarded = prune(context, 0.001)
    assert guarded.kept() == total  # the saved weight came out of the budget
    assert all(int(m.sum()) >= 1 for m in guarded.values())
    weights = {n: p.detach().abs() for n, p in net.named_parameters()}
    # The saved layer keeps its largest weight; the weight given up is the smallest one the other layers kept.
    assert int(guarded["2.weight"].reshape(-1).nonzero()) == int(weights["2.weight"].argmax())
    lost = [(n, naive[n] & ~guarded[n]) for n in ("0.weight", "4.weight")]
    assert sum(int(m.sum()) for _, m in lost) == 1
    smallest_kept = min(float(weights[n][naive[n]].min()) for n in ("0.weight", "4.weight"))
    assert [float(weights[n][m]) for n, m in lost if m.any()] == [smallest_kept]
    assert all(bool((guarded[n] <= naive[n]).all()) for n in ("0.weight", "4.weight"))


def test_guard_min_kept_and_its_limit():
    net = tiny_middle_layer_net()
    context = ScoreContext(net, Masks.dense(net, NAMES))
    with pytest.warns(LayerCollapseWarning):
        masks = prune(context, 0.001, min_kept=5)
    assert int(masks["2.weight"].sum()) == 5 and masks.kept() == round(0.001 * context.masks.numel())
    small = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"the density is too low to keep 1 weight\(s\) in each of the 3 prunable"
                                         r" layers.*allow_layer_collapse=True"):
        prune(ScoreContext(small, Masks.dense(small, ["0.weight", "1.weight", "2.weight"])), 0.1)
    with pytest.raises(ValueError, match="min_kept=0 is not allowed"):
        prune(context, 0.5, min_kept=0)


def test_keep_dense_and_layer_density():
    net = tiny_middle_layer_net()
    context = ScoreContext(net, Masks.dense(net, NAMES))
    masks = prune(context, 0.1, keep_dense=r"^4\.", layer_density={"0.weight": 0.5}, allocation="layerwise")
    assert masks.layer_densities() == {"0.weight": 0.5, "2.weight": pytest.approx(0.1), "4.weight": 1.0}
    # Already pruned weights stay pruned in a kept-dense layer.
    again = prune(ScoreContext(net, masks), 0.05, keep_dense=r"^0\.")
    assert torch.equal(again["0.weight"], masks["0.weight"])


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"keep_dense": "^5"}, r"keep_dense='\^5' matches no prunable parameter; they are: \['0.weight', '2.weight'"),
    ({"keep_dense": "(("}, r"keep_dense='\(\(' is not a valid regex"),
    ({"keep_dense": "^0", "layer_density": {"0.weight": 0.5}}, r"layer_density and keep_dense='\^0' both name"),
    ({"layer_density": {"1.weight": 0.5}}, r"layer_density names parameters that are not masked: \['1.weight'\]"),
    ({"layer_density": {"0.weight": 0.0}}, r"layer_density\['0.weight'\]=0.0 is not allowed"),
    ({"allocation": "erk2"}, r"unknown allocation 'erk2'; known allocations: \['erk', 'global', 'layerwise',"
                             r" 'smart_ratios', 'smart_ratios_linear', 'smart_ratios_vgg'\]"),
])
def test_bad_arguments(kwargs, needle):
    net = tiny_middle_layer_net()
    with pytest.raises(ValueError, match=needle):
        prune(ScoreContext(net, Masks.dense(net, NAMES)), 0.5, **kwargs)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.01, True, "0.1"])
def test_density_outside_zero_one(density):
    net = tiny_middle_layer_net()
    with pytest.raises(ValueError, match=r"density=.* is not allowed; a density is a fraction of weights kept, in"):
        prune(ScoreContext(net, Masks.dense(net, NAMES)), density)


def test_iterative_synflow_avoids_layer_collapse_on_its_own():
    """Tanaka et al.: iterative SynFlow reaches extreme sparsity without emptying a layer, where one-shot magnitude
    does not. Biases are left out so that the conserved synaptic flow is all in the weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(100, 300, bias=False), nn.ReLU(), nn.Linear(300, 300, bias=False), nn.ReLU(),
                        nn.Linear(300, 10, bias=False))
    with torch.no_grad():
        net[2].weight.mul_(1e-3)
    context = ScoreContext(net, Masks.dense(net, NAMES), example_input=torch.zeros(1, 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = prune_iteratively(context, synflow_exponential(0.001, 20), score="synflow", allow_layer_collapse=True)
        naive = prune(context, 0.001, allow_layer_collapse=True)
    assert masks.kept() == naive.kept() == round(0.001 * context.masks.numel())
    assert all(int(m.sum()) > 0 for m in masks.values()) and int(naive["2.weight"].sum()) == 0


def test_a_layer_whose_scores_all_tie_keeps_weights_drawn_at_random():
    from lt_lightning.pruning.prune import TiedScoresWarning

    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    with torch.no_grad():
        net[1].weight.zero_()  # torchvision zero-initialises heads: every magnitude is 0
    names = ["0.weight", "1.weight"]
    kept = []
    for seed in (0, 0, 1):
        context = ScoreContext(net, Masks.dense(net, names), generator=torch.Generator().manual_seed(seed))
        with pytest.warns(TiedScoresWarning, match=r"'magnitude' scores of 1 of 2 prunable layers are all zero: \['1.weight'\]. Likely"
                                                     r" cause: their weights are zero"):
            masks = prune(context, 0.5, allocation="layerwise")
        assert int(masks["1.weight"].sum()) == 50
        kept.append(masks["1.weight"])
    assert not bool(kept[0].flatten()[:50].all())  # not the first 50 in index order
    assert torch.equal(kept[0], kept[1]) and not torch.equal(kept[0], kept[2])  # seeded
