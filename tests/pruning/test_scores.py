"""Each score against a value computed by hand (or by an independent route) on a tiny network."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lt_lightning.masks import Masks
from lt_lightning.pruning import SCORES, ScoreContext, compute_scores, prune, register_score


def mse(module, batch):
    x, y = batch
    return F.mse_loss(module(x), y)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_unchanged(module, before, modes):
    for key, value in module.state_dict().items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key]), key
    assert [m.training for m in module.modules()] == modes


def test_synflow_two_layer_linear_by_hand():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3, bias=False), nn.Linear(3, 2, bias=False))
    mask1 = torch.rand(3, 4) > 0.3
    masks = Masks({"0.weight": mask1, "1.weight": torch.ones(2, 3, dtype=torch.bool)})
    before, modes = _state(net), [m.training for m in net.modules()]
    scores = compute_scores("synflow", ScoreContext(net, masks, example_input=torch.randn(7, 4)))

    # y = |W2| (|W1| * M1) x with x = 1: R = 1^T |W2| A 1, dR/dA = |W2|^T 1 1^T, dR/d|W2| = 1 (A 1)^T.
    w1 = net[0].weight.detach().double().abs() * mask1
    w2 = net[1].weight.detach().double().abs()
    expected1 = w1 * torch.outer(w2.sum(0), torch.ones(4, dtype=torch.float64))
    expected2 = w2 * torch.outer(torch.ones(2, dtype=torch.float64), w1.sum(1))
    assert scores["0.weight"].dtype == torch.float64
    torch.testing.assert_close(scores["0.weight"], expected1)
    torch.testing.assert_close(scores["1.weight"], expected2)
    assert bool((scores["0.weight"][~mask1] == 0).all())  # the masked network is scored
    _assert_unchanged(net, before, modes)


def test_synflow_float64_batchnorm_eval_and_module_restored():
    torch.manual_seed(0)
    layers = []
    for _ in range(20):
        layers += [nn.Linear(16, 16), nn.BatchNorm1d(16)]
    net = nn.Sequential(*layers, nn.Linear(16, 2))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(40.0)  # |W| row sums ~ 400 per layer: R ~ 1e52, beyond float32
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
    net.train()  # synflow must score in eval mode and put train mode back
    names = [f"{i}.weight" for i in range(0, 41, 2)]
    before, modes = _state(net), [m.training for m in net.modules()]
    scores = compute_scores("synflow", ScoreContext(net, Masks.dense(net, names), example_input=torch.randn(3, 16)))
    assert all(bool(torch.isfinite(s).all()) and float(s.max()) > 1e38 for s in scores.values())
    _assert_unchanged(net, before, modes)


def test_snip_one_layer_mse_by_hand_summed_over_batches():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2, bias=False)
    batches = [(torch.randn(5, 3), torch.randn(5, 2)) for _ in range(2)]
    mask = torch.tensor([[True, False, True], [True, True, True]])
    scores = compute_scores("snip", ScoreContext(lin, Masks({"weight": mask}), batches=batches, loss_fn=mse))
    w = lin.weight.detach() * mask
    # L = mean((x W^T - y)^2) over 5 x 2 entries: dL/dW = 2 / 10 * (x W^T - y)^T x.
    grad = sum(2 / 10 * (x @ w.T - y).T @ x for x, y in batches)
    torch.testing.assert_close(scores["weight"], (w * grad).abs())
    assert not torch.equal(lin.weight.detach(), w)  # the module's own pruned weight was not zeroed


def test_grasp_against_explicit_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 2, bias=False))
    names = ["0.weight", "2.weight"]
    masks = Masks({"0.weight": torch.rand(4, 3) > 0.25, "2.weight": torch.ones(4, 2, dtype=torch.bool).T})
    batches = [(torch.randn(6, 3), torch.randn(6, 2)) for _ in range(2)]
    scores = compute_scores("grasp", ScoreContext(net, masks, batches=batches, loss_fn=mse))

    w1 = net[0].weight.detach() * masks["0.weight"]
    w2 = net[2].weight.detach()
    flat = torch.cat([w1.reshape(-1), w2.reshape(-1)])

    def loss(theta):
        a, b = theta[:12].reshape(4, 3), theta[12:].reshape(2, 4)
        return sum(F.mse_loss(torch.tanh(x @ a.T) @ b.T, y) for x, y in batches)

    hessian = torch.autograd.functional.hessian(loss, flat)
    grad = torch.autograd.functional.jacobian(loss, flat)
    expected = flat * (hessian @ grad)  # the higher w * Hg, the more worth keeping (GraSP removes high -w * Hg)
    torch.testing.assert_close(torch.cat([scores[n].reshape(-1) for n in names]), expected)


def test_grasp_keeps_what_the_reference_implementation_keeps():
    """Wang et al.'s code keeps the weights whose -w * Hg is at most the threshold of the fraction it removes."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False))
    names = ["0.weight", "2.weight"]
    batches = [(torch.randn(10, 6), torch.randn(10, 3))]
    context = ScoreContext(net, Masks.dense(net, names), batches=batches, loss_fn=mse)
    masks = prune(context, 0.5, score="grasp")
    minus = torch.cat([(-p.detach() * hg).reshape(-1) for p, hg in zip(
        [net[0].weight, net[2].weight], _hessian_gradient(net, names, batches))])
    removed = torch.topk(minus, minus.numel() // 2).indices
    reference = torch.ones_like(minus, dtype=torch.bool)
    reference[removed] = False
    assert torch.equal(torch.cat([masks[n].reshape(-1) for n in names]), reference)


def _hessian_gradient(net, names, batches):
    params = [dict(net.named_parameters())[n] for n in names]
    g = torch.autograd.grad(sum(mse(net, b) for b in batches), params)
    grads = torch.autograd.grad(sum(mse(net, b) for b in batches), params, create_graph=True)
    return torch.autograd.grad(sum((a.detach() * b).sum() for a, b in zip(g, grads)), params)


@pytest.mark.parametrize("method", ["snip", "grasp"])
def test_data_scores_need_batches_and_a_loss(method):
    lin = nn.Linear(2, 2)
    masks = Masks.dense(lin, ["weight"])
    needle = f"{method.upper() if method == 'snip' else 'GraSP'} needs batches of training data and a loss"
    with pytest.raises(ValueError, match=needle):
        compute_scores(method, ScoreContext(lin, masks))
    with pytest.raises(ValueError, match=needle):
        compute_scores(method, ScoreContext(lin, masks, batches=[(torch.ones(1, 2), torch.ones(1, 2))]))
    with pytest.raises(ValueError, match=needle):
        compute_scores(method, ScoreContext(lin, masks, batches=[], loss_fn=mse))


def test_synflow_needs_an_input_shape():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="SynFlow needs the shape of one input"):
        compute_scores("synflow", ScoreContext(lin, Masks.dense(lin, ["weight"])))


def test_a_new_score_is_one_registered_function():
    @register_score("test_row_index")
    def row_index(context):
        return {n: torch.arange(p.shape[0], dtype=torch.float32)[:, None].expand_as(p)
                for n, p in context.parameters().items()}

    try:
        lin = nn.Linear(3, 4)
        masks = prune(ScoreContext(lin, Masks.dense(lin, ["weight"])), 0.5, score="test_row_index")
        assert masks["weight"].tolist() == [[False] * 3] * 2 + [[True] * 3] * 2
        with pytest.raises(ValueError, match="a score named 'test_row_index' is already registered"):
            register_score("test_row_index")(row_index)
    finally:
        del SCORES["test_row_index"]


def test_unknown_score_lists_the_known_ones():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"unknown score 'snipp'; known scores: \[.*'grasp'.*'snip', 'synflow'\]"):
        prune(ScoreContext(lin, Masks.dense(lin, ["weight"])), 0.5, score="snipp")


def test_grasp_names_the_layer_without_second_derivatives():
    net = nn.Sequential(nn.Linear(4, 8), nn.Hardsigmoid(), nn.Linear(8, 2))
    batch = (torch.randn(5, 4), torch.randint(0, 2, (5,)))
    loss = lambda module, b: nn.functional.cross_entropy(module(b[0]), b[1])  # noqa: E731
    context = ScoreContext(net, Masks.dense(net, ["0.weight", "2.weight"]), [batch], loss)
    with pytest.raises(ValueError, match=r"GraSP needs second derivatives .* layer '1' \(Hardsigmoid\) has none.*'snip'"):
        compute_scores("grasp", context)


def test_synflow_takes_token_inputs_and_keyword_inputs():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.fc = nn.Linear(8, 8)
            self.out = nn.Linear(8, 3)

        def forward(self, input_ids):
            return self.out(torch.relu(self.fc(self.emb(input_ids)))).mean(1)

    net = Tokens()
    masks = Masks.dense(net, ["fc.weight", "out.weight"])
    ids = torch.randint(0, 20, (4, 6))
    for example in (ids, {"input_ids": ids}):
        scores = compute_scores("synflow", ScoreContext(net, masks, example_input=example))
        assert set(scores) == {"fc.weight", "out.weight"} and all(bool((s > 0).any()) for s in scores.values())
