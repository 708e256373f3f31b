import math

import pytest
import torch
from torch import nn

from lt_lightning.analysis.lmc import (
    cosine_similarity,
    error_barrier,
    interpolate,
    l2_distance,
    loss_barrier,
    reestimate_batchnorm,
    support_overlap,
    to_error,
)
from lt_lightning.masks import Masks


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _clone(state):
    return {k: v.detach().clone() for k, v in state.items()}


def _data():
    generator = torch.Generator().manual_seed(123)
    return torch.randn(32, 4, generator=generator), torch.randint(0, 3, (32,), generator=generator)


def _evaluate(module):
    x, y = _data()
    with torch.no_grad():
        out = module(x)
    return {
        "val_loss": float(nn.functional.cross_entropy(out, y)),
        "val_err": float((out.argmax(1) != y).float().mean()),
    }


def _bits(t):
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


# -- the curve -------------------------------------------------------------------------------------------------------


def test_a_state_with_itself_is_flat_and_has_no_barrier():
    net = _mlp(0)
    state = _clone(net.state_dict())
    curve = interpolate(net, state, state, _evaluate, points=7)
    assert [p["alpha"] for p in curve] == torch.linspace(0, 1, 7, dtype=torch.float64).tolist()
    assert all(p == {**curve[0], "alpha": p["alpha"]} for p in curve)
    assert error_barrier(curve) == 0.0 and loss_barrier(curve) == 0.0


def test_default_is_30_points_evenly_spaced_from_exactly_0_to_exactly_1():
    net = _mlp(0)
    curve = interpolate(net, _clone(_mlp(1).state_dict()), _clone(_mlp(2).state_dict()), _evaluate)
    assert len(curve) == 30
    assert curve[0]["alpha"] == 0.0 and curve[-1]["alpha"] == 1.0
    assert [p["alpha"] for p in curve] == pytest.approx(torch.linspace(0, 1, 30).tolist())


def test_endpoints_equal_the_states_own_evaluation_bitwise():
    state_a, state_b = _clone(_mlp(1).state_dict()), _clone(_mlp(2).state_dict())
    curve = interpolate(_mlp(0), state_a, state_b, _evaluate, points=5)
    for point, state in ((curve[0], state_a), (curve[-1], state_b)):
        own = _mlp(9)
        own.load_state_dict(state)
        own.eval()
        assert {k: v for k, v in point.items() if k != "alpha"} == _evaluate(own)
    # The path between two independent initializations is not flat: the barrier is a real number above 0.
    assert loss_barrier(curve) > 0


def test_endpoints_are_the_states_bit_for_bit_even_where_lerp_would_not_be():
    # lerp(a, b, 0) = a + 0 * (b - a) turns -0.0 into 0.0 and an infinite b into nan: endpoints must be copies.
    net = nn.Linear(2, 1, bias=False)
    state_a = {"weight": torch.tensor([[-0.0, 1.0]])}
    state_b = {"weight": torch.tensor([[2.0, math.inf]])}
    seen = []
    interpolate(net, state_a, state_b, lambda m: seen.append(m.weight.detach().clone()) or {}, points=3)
    assert torch.equal(_bits(seen[0]), _bits(state_a["weight"]))
    assert torch.equal(_bits(seen[-1]), _bits(state_b["weight"]))


def test_midpoints_are_the_hand_computed_mix():
    net = nn.Linear(2, 1)
    state_a = {"weight": torch.tensor([[1.0, 2.0]]), "bias": torch.tensor([0.0])}
    state_b = {"weight": torch.tensor([[3.0, -2.0]]), "bias": torch.tensor([1.0])}
    seen = []

    def evaluate(module):
        seen.append(_clone(module.state_dict()))
        return {"out": float(module(torch.ones(1, 2)).detach())}

    curve = interpolate(net, state_a, state_b, evaluate, points=5)
    # alpha = 0.25: 0.75 * A + 0.25 * B, exact in binary.
    assert seen[1]["weight"].tolist() == [[1.5, 1.0]] and seen[1]["bias"].tolist() == [0.25]
    assert curve[1] == {"alpha": 0.25, "out": 2.75}
    assert curve[2]["out"] == 0.5 * (1 + 2 + 0) + 0.5 * (3 - 2 + 1)
    # And the general formula at every point, on random weights.
    state_a, state_b = _clone(_mlp(1).state_dict()), _clone(_mlp(2).state_dict())
    seen.clear()
    curve = interpolate(_mlp(0), state_a, state_b, lambda m: seen.append(_clone(m.state_dict())) or {}, points=4)
    for point, state in zip(curve, seen):
        a = point["alpha"]
        for key in state_a:
            assert torch.allclose(state[key], (1 - a) * state_a[key] + a * state_b[key], rtol=0, atol=1e-6)


def test_the_module_own_state_dict_can_be_an_endpoint():
    # module.state_dict() shares memory with the module, which interpolate overwrites point after point.
    net, other = _mlp(1), _clone(_mlp(2).state_dict())
    expected = interpolate(_mlp(0), _clone(net.state_dict()), other, _evaluate, points=4)
    assert interpolate(net, net.state_dict(), other, _evaluate, points=4) == expected
    reverse = interpolate(net, other, net.state_dict(), _evaluate, points=4)
    assert [p["val_loss"] for p in reverse] == pytest.approx([p["val_loss"] for p in expected[::-1]])


def test_module_state_and_modes_are_restored_even_when_evaluate_raises():
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3))
    net.train()
    net[1].eval()  # mixed modes must come back as they were, not as one module-wide mode
    net[2].running_mean.fill_(0.5)
    before = _clone(net.state_dict())
    modes = [m.training for m in net.modules()]
    state_a, state_b = _clone(net.state_dict()), _clone(net.state_dict())
    for v in state_b.values():
        v.add_(1)
    seen_modes = []

    def evaluate(module):
        seen_modes.append(module.training)
        return _evaluate(module)

    with pytest.warns(UserWarning, match="BatchNorm"):
        interpolate(net, state_a, state_b, evaluate, points=3)
    assert seen_modes == [False, False, False]  # evaluate sees eval mode
    assert all(torch.equal(_bits(net.state_dict()[k]), _bits(v)) for k, v in before.items())
    assert [m.training for m in net.modules()] == modes

    def failing(module):
        raise RuntimeError("boom")

    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="boom"):
        interpolate(net, state_a, state_b, failing, points=3)
    assert all(torch.equal(_bits(net.state_dict()[k]), _bits(v)) for k, v in before.items())
    assert [m.training for m in net.modules()] == modes


def test_the_given_module_is_evaluated_in_place_without_copies():
    net = _mlp(0)
    params = [p for p in net.parameters()]
    pointers = [p.data_ptr() for p in params]
    seen = []

    def evaluate(module):
        same = [p is q for p, q in zip(module.parameters(), params)]
        seen.append((id(module), [p.data_ptr() for p in module.parameters()], same))
        return _evaluate(module)

    interpolate(net, _clone(_mlp(1).state_dict()), _clone(_mlp(2).state_dict()), evaluate, points=4)
    assert len(seen) == 4
    for ident, ptrs, same in seen:
        assert ident == id(net) and ptrs == pointers and all(same)
    assert [p.data_ptr() for p in net.parameters()] == pointers
    assert all(p.requires_grad and p.grad is None for p in net.parameters())


# -- masks -----------------------------------------------------------------------------------------------------------


def test_masks_keep_pruned_weights_exactly_zero_at_every_point():
    torch.manual_seed(0)
    mask = torch.rand(8, 4) > 0.5
    masks = Masks({"0.weight": mask})
    # The states hold nonzero values where the masks prune: the masks given win.
    state_a, state_b = _clone(_mlp(1).state_dict()), _clone(_mlp(2).state_dict())
    checked = []

    def evaluate(module):
        weight = module[0].weight
        assert bool((weight[~mask] == 0).all())
        assert bool((weight[mask] != 0).all())
        checked.append(True)
        return _evaluate(module)

    curve = interpolate(_mlp(0), state_a, state_b, evaluate, points=6, masks=masks)
    assert len(checked) == 6
    masked_a = _clone(state_a)
    masked_a["0.weight"] = state_a["0.weight"] * mask
    own = _mlp(9)
    own.load_state_dict(masked_a)
    own.eval()
    assert {k: v for k, v in curve[0].items() if k != "alpha"} == _evaluate(own)
    # A plain {name: 0/1 tensor} mapping works as well.
    interpolate(_mlp(0), state_a, state_b, evaluate, points=3, masks={"0.weight": mask.float()})


def test_without_masks_weights_pruned_by_one_state_only_go_linearly_from_zero():
    net = nn.Linear(3, 1, bias=False)
    state_a = {"weight": torch.tensor([[2.0, 0.0, 4.0]])}  # pruned at 1
    state_b = {"weight": torch.tensor([[0.0, 6.0, 8.0]])}  # pruned at 0
    assert support_overlap(state_a, state_b) == pytest.approx(1 / 3)
    seen = []
    interpolate(net, state_a, state_b, lambda m: seen.append(m.weight.detach().clone()) or {}, points=3)
    assert seen[1].tolist() == [[1.0, 3.0, 6.0]]  # dense in the middle: the union of the supports
    shared = {"weight": torch.tensor([[1.0, 0.0, 5.0]])}
    assert support_overlap(state_a, shared) == 1.0


# -- BatchNorm -------------------------------------------------------------------------------------------------------


def test_reestimate_batchnorm_gives_the_batch_statistics_of_the_features_it_sees():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    net.train()
    net[1].eval()
    modes = [m.training for m in net.modules()]
    batches = [(torch.randn(8, 3), torch.zeros(8)), (torch.randn(8, 3) + 2, torch.zeros(8))]
    reestimate_batchnorm(net, batches)
    with torch.no_grad():
        features = [net[0](x) for x, _ in batches]  # dropout must have been off: these are the BN's inputs
    expected_mean = torch.cat(features).mean(0)  # equal-size batches: the mean of batch means is the overall mean
    expected_var = torch.stack([f.var(0, unbiased=True) for f in features]).mean(0)
    assert torch.allclose(net[2].running_mean, expected_mean, atol=1e-6)
    assert torch.allclose(net[2].running_var, expected_var, atol=1e-5)
    assert int(net[2].num_batches_tracked) == 2
    assert net[2].momentum == 0.1
    assert [m.training for m in net.modules()] == modes
    # A custom forward sees every batch.
    calls = []
    reestimate_batchnorm(net, [{"x": x} for x, _ in batches], forward=lambda m, b: calls.append(1) or m(b["x"]))
    assert len(calls) == 2 and torch.allclose(net[2].running_mean, expected_mean, atol=1e-6)


def test_reestimate_batchnorm_errors_leave_the_statistics_alone():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="batches is empty"):
        reestimate_batchnorm(net, [])
    assert net[1].running_mean.tolist() == [3.0] * 4
    with pytest.raises(ValueError, match="no BatchNorm"):
        reestimate_batchnorm(nn.Linear(2, 2), [torch.zeros(1, 2)])


def _opposite_bn_states():
    # B = A with the linear weights negated: the midpoint's features are all zero, so their true variance is 0,
    # while A's and B's running variances (and so their mix) are those of nonzero features.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2))
    net.train()
    with torch.no_grad():
        net(torch.randn(64, 2) * 3)
    state_a = _clone(net.state_dict())
    state_b = _clone(state_a)
    state_b["0.weight"] = -state_a["0.weight"]
    return net, state_a, state_b


def test_interpolated_batchnorm_statistics_differ_from_reestimated_ones():
    net, state_a, state_b = _opposite_bn_states()
    batches = [torch.randn(16, 2) for _ in range(2)]

    def stats(module):
        return {"var": float(module[1].running_var.mean()), "mean": float(module[1].running_mean.abs().mean())}

    with pytest.warns(UserWarning, match="interpolated"):
        mixed = interpolate(net, state_a, state_b, stats, points=3)
    reestimated = interpolate(net, state_a, state_b, stats, points=3, bn_batches=batches)
    assert mixed[1]["var"] > 0.5  # the mix of the two endpoints' variances
    assert reestimated[1]["var"] == 0.0 and reestimated[1]["mean"] == 0.0
    # Endpoints are re-estimated too, so that all points are measured alike.
    assert reestimated[0]["var"] != pytest.approx(float(state_a["1.running_var"].mean()))
    # num_batches_tracked is an integer buffer: A's at every point without re-estimation.
    assert int(net[1].num_batches_tracked) == int(state_a["1.num_batches_tracked"])


def test_conv_batchnorm_reestimated_at_every_point_from_a_generator():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
    state_a = _clone(net.state_dict())
    torch.manual_seed(1)
    state_b = _clone(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).state_dict())
    batches = [torch.randn(4, 1, 6, 6) for _ in range(2)]
    seen = []

    def evaluate(module):
        with torch.no_grad():
            features = torch.cat([module[0](x) for x in batches])
        seen.append((module[1].running_mean.clone(), features.mean((0, 2, 3))))
        return {"x": 0.0}

    interpolate(net, state_a, state_b, evaluate, points=4, bn_batches=(x for x in batches))
    assert len(seen) == 4
    for running, expected in seen:  # a one-shot generator is read once and reused at every point
        assert torch.allclose(running, expected, atol=1e-6)


def test_bn_batches_for_a_module_without_batchnorm_warn():
    net = _mlp(0)
    state = _clone(net.state_dict())
    with pytest.warns(UserWarning, match="no BatchNorm"):
        interpolate(net, state, state, _evaluate, points=2, bn_batches=[torch.zeros(1, 4)])


# -- barriers --------------------------------------------------------------------------------------------------------


def test_barriers_on_hand_made_curves():
    curve = [
        {"alpha": 0.0, "val_err": 0.10, "val_loss": 0.3, "val_acc": 0.90},
        {"alpha": 0.5, "val_err": 0.60, "val_loss": 2.0, "val_acc": 0.40},
        {"alpha": 1.0, "val_err": 0.20, "val_loss": 0.5, "val_acc": 0.80},
    ]
    assert error_barrier(curve) == pytest.approx(0.45)
    assert loss_barrier(curve) == pytest.approx(1.6)
    assert error_barrier(curve, key="val_acc", higher_is_better=True) == pytest.approx(0.45)
    percent = [{"acc": 100 * p["val_acc"]} for p in curve]
    assert error_barrier(percent, key="acc", higher_is_better=True) == pytest.approx(45.0)
    assert error_barrier(to_error(percent, key="acc", scale=100)) == pytest.approx(45.0)
    assert [p["val_err"] for p in to_error(curve)] == pytest.approx([0.1, 0.6, 0.2])
    # The maximum may be an endpoint: then the barrier is half the endpoints' difference, never negative.
    assert error_barrier([{"val_err": 0.3}, {"val_err": 0.2}, {"val_err": 0.1}]) == pytest.approx(0.1)
    assert error_barrier([{"val_err": 0.2}, {"val_err": 0.2}]) == 0.0
    assert math.isnan(loss_barrier([{"val_loss": 1.0}, {"val_loss": math.nan}, {"val_loss": 1.0}]))


def test_barrier_errors_name_the_key_and_list_the_available_ones():
    curve = [{"alpha": 0.0, "val_loss": 1.0, "val_acc": 0.5}, {"alpha": 1.0, "val_loss": 1.0, "val_acc": 0.5}]
    with pytest.raises(ValueError, match=r"key='val_err'.*available: \['val_loss', 'val_acc'\]"):
        error_barrier(curve)
    with pytest.raises(ValueError, match="key='loss'"):
        loss_barrier(curve, key="loss")
    with pytest.raises(ValueError, match="1 point"):
        loss_barrier(curve[:1])
    with pytest.raises(ValueError, match="key='acc'"):
        to_error(curve, key="acc")


# -- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("points", [1, 0, -3, 2.0, True, "30"])
def test_points_must_be_an_int_of_at_least_2(points):
    net = _mlp(0)
    state = _clone(net.state_dict())
    with pytest.raises(ValueError, match=f"points={points!r}"):
        interpolate(net, state, state, _evaluate, points=points)


def test_states_with_different_keys_or_shapes_are_refused_by_name():
    net = _mlp(0)
    state = _clone(net.state_dict())
    missing = {k: v for k, v in state.items() if k != "2.bias"}
    with pytest.raises(ValueError, match=r"state_b lacks '2.bias'"):
        interpolate(net, state, missing, _evaluate)
    with pytest.raises(ValueError, match=r"state_b has 'extra'"):
        interpolate(net, state, {**state, "extra": torch.zeros(1)}, _evaluate)
    wider = {**state, "0.weight": torch.zeros(9, 4)}
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(8, 4\) in state_a but \(9, 4\) in state_b"):
        interpolate(net, state, wider, _evaluate)
    with pytest.raises(ValueError, match=r"'0.weight' has shape \(8, 4\) in the module but \(9, 4\) in state_a"):
        interpolate(net, wider, wider, _evaluate)
    other = _clone(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 1)).state_dict())
    with pytest.raises(ValueError, match=r"state_a has '3.weight'"):
        interpolate(net, other, other, _evaluate)
    with pytest.raises(ValueError, match=r"masks name 'nope.weight'"):
        interpolate(net, state, state, _evaluate, masks={"nope.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"mask '0.weight' has shape \(4, 8\)"):
        interpolate(net, state, state, _evaluate, masks={"0.weight": torch.ones(4, 8, dtype=torch.bool)})


@pytest.mark.parametrize("metrics", [{"val_err": "low"}, {"val_err": torch.ones(2)}, {"val_err": None}, {"alpha": 1.0}])
def test_metrics_must_be_numbers(metrics):
    net = _mlp(0)
    state = _clone(net.state_dict())
    with pytest.raises(ValueError, match="val_err|alpha"):
        interpolate(net, state, state, lambda m: metrics, points=2)


def test_scalar_tensor_and_int_metrics_become_floats():
    net = _mlp(0)
    state = _clone(net.state_dict())
    curve = interpolate(net, state, state, lambda m: {"loss": torch.tensor(0.5), "n": 3}, points=2)
    assert curve[0] == {"alpha": 0.0, "loss": 0.5, "n": 3.0} and type(curve[0]["n"]) is float


# -- distances -------------------------------------------------------------------------------------------------------


def test_distances_over_chosen_or_all_float_entries():
    a = {"w": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([1.0, 1.0]), "b": torch.tensor([2.0]), "n": torch.tensor(7)}
    assert l2_distance(a, b) == pytest.approx(math.sqrt(5))  # the integer entry is not compared
    assert l2_distance(a, b, names=["w"]) == 1.0
    assert cosine_similarity(a, b, names=["w"]) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity(a, a) == pytest.approx(1.0)
    assert support_overlap(a, b, names=["w"]) == 0.5
    with pytest.raises(ValueError, match="all zeros"):
        cosine_similarity(a, b, names=["b"])
    with pytest.raises(ValueError, match="'x'.*state_a lacks"):
        l2_distance(a, b, names=["x"])
    with pytest.raises(ValueError, match="'n' is not a floating-point"):
        l2_distance(a, b, names=["n"])
