"""Supermask layers in plain torch: frozen weights, exact top-k masks, the straight-through gradient, biprop's binary
weights, weight initializations, the ticket of the subnetwork, and every argument refused with a clear message."""

import math

import pytest
import torch
from torch import nn

from lt_lightning.supermask import (
    SupermaskSpec,
    apply_supermask_ticket,
    frozen_tensors,
    kept_count,
    progressive_density,
    set_density,
    subnetwork_masks,
    subnetwork_ticket,
    supermask_layers,
)
from lt_lightning.ticket import apply_ticket


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Conv1d(1, 4, 3), nn.Flatten(), nn.Linear(112, 5))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(20, 30), nn.Linear(30, 5)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_layers_keep_exactly_their_density_and_only_scores_train():
    model = Net()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert SupermaskSpec(density=0.3).apply(model) == ["a.weight", "b.weight"]
    frozen = frozen_tensors(model)
    for name in ("a.weight", "b.weight"):
        assert not frozen[name].requires_grad and torch.equal(frozen[name], before[name])  # weight_init="module"
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["a.parametrizations.weight.0.scores", "b.parametrizations.weight.0.scores"]  # biases frozen too
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x = torch.randn(16, 20)
    for _ in range(5):
        optimizer.zero_grad()
        model(x).square().mean().backward()
        optimizer.step()
        masks = subnetwork_masks(model)
        assert {n: int(m.sum()) for n, m in masks.items()} == {"a.weight": kept_count(0.3, 600), "b.weight": 45}
        for name, mask in masks.items():  # the layer computes with the kept frozen weights, the others are zero
            layer = model.get_submodule(name.rsplit(".", 1)[0])
            assert torch.equal(layer.weight, frozen[name] * mask)
    assert torch.equal(frozen["a.weight"], before["a.weight"])


def test_straight_through_gradient_reaches_every_score():
    model = Net()
    SupermaskSpec(density=0.5, method="edge_popup").apply(model)
    layer = supermask_layers(model)["a.weight"]
    x = torch.randn(8, 20)
    model(x).sum().backward()
    assert model.a.parametrizations.weight.original.grad is None  # the frozen weights get no gradient
    # d loss / d score = (d loss / d effective weight) * w * sign(score), for kept and pruned weights alike
    effective = model.a.weight.detach().requires_grad_(True)
    (model.b(torch.relu(nn.functional.linear(x, effective, model.a.bias)))).sum().backward()
    expected = effective.grad * frozen_tensors(model)["a.weight"] * layer.scores.detach().sign()
    assert torch.allclose(layer.scores.grad, expected)
    pruned = layer.mask() == 0
    assert bool((layer.scores.grad[pruned] != 0).any())


def test_biprop_binarizes_the_kept_weights_with_the_mean_magnitude():
    model = Net()
    SupermaskSpec(density=0.25, method="biprop", weight_init="kaiming_normal", seed=3).apply(model)
    for name, frozen in frozen_tensors(model).items():
        mask = supermask_layers(model)[name].mask().bool()
        weight = model.get_submodule(name.rsplit(".", 1)[0]).weight.detach()
        alpha = frozen[mask].abs().mean()
        assert torch.allclose(weight[mask], alpha * frozen[mask].sign()) and bool((weight[~mask] == 0).all())


def test_global_allocation_keeps_the_total_exactly():
    model = net()
    SupermaskSpec(density=0.2, allocation="global").apply(model)
    masks = subnetwork_masks(model)
    assert masks.kept() == round(0.2 * masks.numel()) and len(set(masks.layer_densities().values())) > 1


@pytest.mark.parametrize("init", ["kaiming_normal", "signed_constant"])
@pytest.mark.parametrize("scale_fan", [False, True])
def test_drawn_weights_follow_kaiming_and_the_seed(init, scale_fan):
    models = [Net(), Net()]
    for model, seed in zip(models, (0, 0)):
        SupermaskSpec(density=0.25, weight_init=init, scale_fan=scale_fan, seed=seed).apply(model)
    frozen = frozen_tensors(models[0])["a.weight"]
    assert torch.equal(frozen, frozen_tensors(models[1])["a.weight"])  # the same on every rank
    std = math.sqrt(2 / (20 * (0.25 if scale_fan else 1)))
    if init == "signed_constant":
        assert torch.allclose(frozen.abs(), torch.full_like(frozen, std)) and 0.3 < float((frozen > 0).float().mean()) < 0.7
    else:
        assert abs(float(frozen.std()) - std) < 0.1 * std
    other = Net()
    SupermaskSpec(density=0.25, weight_init=init, scale_fan=scale_fan, seed=1).apply(other)
    assert not torch.equal(frozen, frozen_tensors(other)["a.weight"])


def test_masks_are_computed_once_per_change_of_the_scores():
    model = Net()
    SupermaskSpec(density=0.5).apply(model)
    layer = supermask_layers(model)["a.weight"]
    first = layer.mask().clone()
    assert layer.mask().data_ptr() == layer.mask().data_ptr()
    with torch.no_grad():
        layer.scores.neg_().mul_(torch.rand_like(layer.scores))  # another ranking
    assert not torch.equal(layer.mask(), first)
    set_density(model, 0.1)
    assert int(layer.mask().sum()) == 60


def test_the_ticket_loads_into_a_fresh_module_and_computes_the_same():
    model = Net()
    SupermaskSpec(density=0.4, method="biprop", weight_init="signed_constant").apply(model)
    x = torch.randn(4, 20)
    ticket = subnetwork_ticket(model, {"method": "biprop"})
    assert set(ticket.state_dict) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    fresh = Net()
    ticket.apply(fresh)
    assert torch.allclose(fresh(x), model(x))


def test_ticket_file_round_trip(tmp_path):
    model = Net()
    SupermaskSpec(density=0.4, weight_init="signed_constant").apply(model)
    path = tmp_path / "t.pt"
    subnetwork_ticket(model, {"basis": "identity"}).save(path)
    fresh = Net()
    apply_ticket(path, fresh)
    assert torch.allclose(fresh(torch.ones(2, 20)), model(torch.ones(2, 20)))
    other = nn.Sequential(nn.Linear(20, 31), nn.Linear(31, 5))
    with pytest.raises(ValueError, match="does not fit Sequential"):
        apply_supermask_ticket(path, other)


def test_progressive_density_falls_from_half_to_the_target():
    values = [progressive_density(0.05, e, 10) for e in range(12)]
    assert values[0] == 0.5 and values[10:] == [0.05, 0.05] and values == sorted(values, reverse=True)
    assert progressive_density(0.7, 0, 10) == 0.7


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"density": 0.0}, r"density=0.0 is not allowed; a density is a fraction of weights kept, in \(0, 1\]"),
    ({"density": 1.01}, r"density=1.01 is not allowed"),
    ({"method": "popup"}, r"unknown supermask method 'popup'; known supermask methods: \['biprop', 'edge_popup'\]"),
    ({"basis": "fft"}, r"unknown basis name 'fft'; known basis names: \['dct', 'identity'\]"),
    ({"weight_init": "xavier"}, r"unknown weight_init 'xavier'; known weight_inits: \['kaiming_normal', 'module',"),
    ({"allocation": "erk"}, r"allocation='erk' is not allowed; allowed: \['layerwise', 'global'\]"),
    ({"scale_fan": True}, r"scale_fan=True rescales the weights the supermask draws, but weight_init='module'"),
    ({"include": "("}, r"include='\(' is not a valid regex"),
    ({"seed": 1.5}, r"seed=1.5 is not allowed; expected an int"),
])
def test_bad_arguments_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupermaskSpec(**kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"types": ["Linear", "ReLU"]}, r"types=\['Linear', 'ReLU'\] names ReLU, but '1' has no weight to mask"),
    ({"types": ["ReLU"]}, r"no prunable parameters in Sequential \(types=\['ReLU'\]"),
    ({"include": r"0\.bias"}, r"'0.bias' has shape \(30,\): a supermask or basis needs a weight of 2 dimensions"),
])
def test_layers_without_a_weight_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SupermaskSpec(**kwargs).apply(net())


def test_a_module_gets_one_supermask():
    model = Net()
    SupermaskSpec().apply(model)
    with pytest.raises(ValueError, match="already has supermask layers"):
        SupermaskSpec().apply(model)
