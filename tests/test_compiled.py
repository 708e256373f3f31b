"""Modules under ``torch.compile``: masks and tickets name tensors as the plain module does (no ``_orig_mod.``).

``backend="eager"`` compiles with TorchDynamo but runs the captured graph eagerly: the module is wrapped exactly as
by the default backend (an ``OptimizedModule`` holding it as ``_orig_mod``), without inductor's code generation,
which takes about 25 s for a two-layer MLP on this CPU.
"""

import copy

import pytest
import torch
from conftest import digits_model, make_trainer
from torch import nn

from lt_lightning import IMPCallback, load_ticket
from lt_lightning.masks import Masks, named_parameters, plain_state_dict, select_parameters
from lt_lightning.pruning import ScoreContext
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.ticket import Ticket, apply_ticket


class Holder(nn.Module):
    """A module holding a compiled submodule, as a LightningModule holding ``self.net = torch.compile(net)``."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(6, 8)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(torch.relu(self.stem(x)))


def _pair():
    """A module, a copy of it with a compiled submodule, and another copy."""
    torch.manual_seed(0)
    plain = Holder()
    compiled = copy.deepcopy(plain)
    compiled.net = torch.compile(compiled.net, backend="eager")
    return plain, compiled, Holder()


def test_compiled_names_are_plain():
    plain, compiled, _ = _pair()
    assert any("_orig_mod" in n for n, _ in compiled.named_parameters())  # what torch.compile does to names
    assert select_parameters(compiled) == select_parameters(plain) == ["stem.weight", "net.0.weight", "net.3.weight"]
    assert list(named_parameters(compiled)) == [n for n, _ in plain.named_parameters()]
    assert list(plain_state_dict(compiled)) == list(plain.state_dict())
    whole = torch.compile(plain.net, backend="eager")
    assert select_parameters(whole) == ["0.weight", "3.weight"]


@pytest.mark.parametrize("score", ["magnitude", "snip", "synflow"])
def test_masks_of_the_compiled_module_equal_the_plain_ones(score):
    plain, compiled, _ = _pair()
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    loss = lambda module, batch: nn.functional.cross_entropy(module(batch[0]), batch[1])  # noqa: E731
    spec = PruningSpec(score=score)
    masks = []
    for module in (plain, compiled):
        names, _ = spec.resolve(module)
        masks.append(spec.prune(ScoreContext(module, Masks.dense(module, names), [(x, y)], loss,
                                             example_input=x), 0.3))
    assert list(masks[1]) == ["stem.weight", "net.0.weight", "net.3.weight"]
    assert masks[1] == masks[0] and masks[0].density() < 1


def test_tickets_move_between_compiled_and_plain_modules(tmp_path):
    plain, compiled, other = _pair()
    torch.nn.init.normal_(compiled.stem.weight)  # the two differ, so that the loaded ticket shows
    names = select_parameters(compiled)
    masks = Masks({n: torch.rand_like(p) > 0.5 for n, p in named_parameters(compiled).items() if n in names})

    Ticket.from_state(plain_state_dict(compiled), masks).save(tmp_path / "compiled.pt")
    ticket = load_ticket(tmp_path / "compiled.pt")
    assert not any("_orig_mod" in n for n in [*ticket.masks, *ticket.state_dict])
    apply_ticket(tmp_path / "compiled.pt", plain)
    for name, value in plain.state_dict().items():
        assert torch.equal(value, ticket.state_dict[name])
    assert bool((plain.stem.weight[~masks["stem.weight"]] == 0).all())

    # And back: a plain module's ticket into the compiled module.
    Ticket.from_state(other.state_dict(), masks).save(tmp_path / "plain.pt")
    apply_ticket(tmp_path / "plain.pt", compiled)
    back = load_ticket(tmp_path / "plain.pt")
    for name, value in plain_state_dict(compiled).items():
        assert torch.equal(value, back.state_dict[name])
    assert bool((compiled.net._orig_mod[3].weight[~masks["net.3.weight"]] == 0).all())
    compiled(torch.randn(4, 6))  # the compiled module still runs


def test_imp_on_a_lightning_module_with_a_compiled_submodule(tmp_path, datamodule):
    model = digits_model(optimizer="sgd", lr=0.1)
    model.model = torch.compile(model.model, backend="eager")
    imp = IMPCallback(rounds=1, pruning_fraction=0.5)
    make_trainer(tmp_path, [imp], max_steps=6, limit_val_batches=1).fit(model, datamodule)

    assert list(imp.masks) == ["model.hidden.0.weight", "model.hidden.1.weight", "model.out.weight"]
    tickets = [load_ticket(h["ticket"]) for h in imp.history if h["ticket"] is not None]
    assert tickets and all("_orig_mod" not in n for t in tickets for n in [*t.masks, *t.state_dict])
    fresh = digits_model()
    tickets[-1].apply(fresh)  # a ticket of the compiled module trains the plain one
    assert fresh.model.out.weight.count_nonzero() == tickets[-1].masks["model.out.weight"].sum()


def test_interpolating_a_compiled_module_between_plain_states():
    from lt_lightning.analysis.lmc import interpolate

    plain, compiled, other = _pair()
    curve = interpolate(compiled, plain.state_dict(), other.state_dict(),
                        lambda m: {"w": float(m.stem.weight[0, 0])}, points=3)
    ends = float(plain.stem.weight[0, 0]), float(other.stem.weight[0, 0])
    assert [p["w"] for p in curve] == pytest.approx([ends[0], sum(ends) / 2, ends[1]])
