"""Tickets on other architectures (Chen et al. 2021), IMP from pre-trained weights, and mask similarity."""

from __future__ import annotations

import os
import sys
import warnings

import lightning.pytorch as pl
import pytest
import torch
from conformance.checks import assert_pruned_zero
from conftest import digits_model, make_trainer
from torch import nn

from lt_lightning import IMPCallback, MaskingCallback, RewindCallback, Ticket, apply_ticket, load_ticket
from lt_lightning.analysis import mask_similarity
from lt_lightning.cli import main
from lt_lightning.masks import Masks
from lt_lightning.ticket import TransferWarning

HIDDEN = ("model.hidden.0.weight", "model.hidden.1.weight")


def _ticket(seed=0, density=0.4):
    pl.seed_everything(seed, verbose=False)
    model = digits_model()
    gen = torch.Generator().manual_seed(seed)
    masks = Masks({n: torch.rand(p.shape, generator=gen) < density for n, p in model.named_parameters()
                   if n.endswith("weight")})
    return Ticket.from_state(model.state_dict(), masks, {"round": 3})


def _five_classes():
    return digits_model(model_kwargs={"in_features": 64, "hidden": [32, 16], "num_classes": 5})


def test_a_ticket_on_a_module_with_another_head(tmp_path):
    ticket = _ticket()
    ticket.save(tmp_path / "t.pt")
    target = _five_classes()
    head = target.model.out.weight.detach().clone()
    with pytest.warns(TransferWarning) as caught:
        apply_ticket(tmp_path / "t.pt", target, exclude=r"^model\.out\.")
    (warning,) = caught
    assert str(warning.message) == (
        "prunable layers of Classifier without a mask in the ticket stay dense: ['model.out.weight']; the module keeps"
        " its own values of ['model.out.weight', 'model.out.bias'].")
    state = target.state_dict()
    for name in HIDDEN:  # the ticket's weights, pruned ones zero
        assert torch.equal(state[name], ticket.state_dict[name])
    assert_pruned_zero(state, {n: ticket.masks[n] for n in HIDDEN})
    assert torch.equal(state["model.hidden.0.bias"], ticket.state_dict["model.hidden.0.bias"])
    assert torch.equal(state["model.out.weight"], head)  # the head: the module's own, dense


def test_names_mapped_by_regex():
    ticket = _ticket()
    target = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every layer and entry mapped: nothing to warn about
        masks = ticket.transfer(target, rename={r"^model\.hidden\.0\.": "0.", r"^model\.hidden\.1\.": "2.",
                                                r"^model\.out\.": "4."})
    assert list(masks) == ["0.weight", "2.weight", "4.weight"]
    for mine, theirs in zip(["0.weight", "2.weight", "4.weight"], [*HIDDEN, "model.out.weight"]):
        assert torch.equal(masks[mine], ticket.masks[theirs])
        assert torch.equal(target.state_dict()[mine], ticket.state_dict[theirs])
    # weights=False: the masks only, on the module's own weights.
    fresh = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 7))
    before = fresh[0].weight.detach().clone()
    with pytest.warns(TransferWarning, match=r"stay dense: \['4.weight'\]$|stay dense: \['4.weight'\]\.$"):
        ticket.transfer(fresh, rename={r"^model\.hidden\.0\.": "0.", r"^model\.hidden\.1\.": "2."}, exclude="out",
                        weights=False)
    assert torch.equal(fresh[0].weight, before * masks["0.weight"])


def test_a_transferred_ticket_trains_through_masking_callback(tmp_path, datamodule):
    ticket = _ticket()
    ticket.save(tmp_path / "t.pt")
    callback = MaskingCallback(ticket=str(tmp_path / "t.pt"), exclude=r"^model\.out\.")
    model = digits_model()
    with pytest.warns(TransferWarning, match="model.out.weight"):
        make_trainer(tmp_path, [callback], max_epochs=None, max_steps=5, logger=False).fit(model, datamodule)
    assert list(callback.masks) == list(HIDDEN)
    assert_pruned_zero(dict(model.named_parameters()), {n: ticket.masks[n] for n in HIDDEN})
    assert bool((model.model.out.weight != 0).all())  # dense, trained


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({}, r"the ticket's 'model.out.weight' has shape \(10, 16\) but Classifier's 'model.out.weight' has \(5, 16\):"
         r" leave it out with exclude="),
    ({"rename": {r"^model\.": "net."}}, r"the ticket's 'model.hidden.0.weight' \(as 'net.hidden.0.weight'\) names no"
                                        r" entry of Classifier"),
    ({"rename": {r"^encoder\.": ""}}, r"rename key '\^encoder\\\\.' matches no entry of the ticket"),
    ({"exclude": "head"}, r"exclude='head' matches no entry of the ticket"),
    ({"rename": {r"hidden\.\d": "hidden.0"}, "exclude": "out"}, r"rename maps both 'model.hidden.0.weight' and"
                                                                r" 'model.hidden.1.weight' to 'model.hidden.0.weight'"),
    ({"exclude": "(out"}, r"exclude='\(out' is not a valid regex"),
    ({"exclude": r"weight$|^model\.out\."}, r"no masked entry of the ticket is transferred"),
])
def test_transfer_errors_name_the_entry(kwargs, needle):
    target = _five_classes()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=needle):
        _ticket().transfer(target, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())  # untouched


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"rename": {"(": "x"}}, r"rename key='\(' is not a valid regex"),
    ({"rename": ["a"]}, r"rename=\['a'\] is not allowed; expected \{regex: replacement\}"),
    ({"exclude": "out", "control": "reinit"}, r"control='reinit' .* cannot be combined with rename= or exclude="),
])
def test_masking_callback_checks_transfer_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        MaskingCallback(ticket="t.pt", **kwargs)


def test_imp_from_pretrained_weights_rewinds_to_them(tmp_path, datamodule):
    """Weights loaded into the module before the fit are the rewind point at step 0: every round starts there."""
    pretrained = digits_model(optimizer="sgd", lr=0.1)
    make_trainer(tmp_path / "pre", max_epochs=1, logger=False).fit(pretrained, datamodule)
    weights = {k: v.detach().clone() for k, v in pretrained.state_dict().items()}
    model = digits_model(optimizer="sgd", lr=0.1)
    model.load_state_dict(weights)
    imp = IMPCallback(rounds=2, pruning_fraction=0.5, dirpath=str(tmp_path / "imp"))
    make_trainer(tmp_path, [RewindCallback(step=0), imp], max_epochs=None, max_steps=6, logger=False).fit(
        model, datamodule)
    point = load_ticket(tmp_path / "imp" / "tickets" / "rewind_point.pt")
    assert point.masks.density() == 1.0
    assert all(torch.equal(point.state_dict[k], v) for k, v in weights.items())
    ticket = load_ticket(tmp_path / "imp" / "tickets" / "round_02.pt")
    assert ticket.metadata["rewind_step"] == 0
    for name, mask in ticket.masks.items():  # the round's ticket: the pre-trained weights, masked
        assert torch.equal(ticket.state_dict[name], weights[name] * mask)


# ---------------------------------------------------------------------------------------------- similarity
def test_mask_similarity_per_layer_and_overall():
    a, b = _ticket(0).masks, _ticket(1).masks
    result = mask_similarity(a, b)
    inter = union = 0
    for name in a:
        shared, either = int((a[name] & b[name]).sum()), int((a[name] | b[name]).sum())
        assert result["layers"][name]["iou"] == shared / either
        assert result["layers"][name]["density_a"] == a.layer_densities()[name]
        inter, union = inter + shared, union + either
        # Independent random masks: the IoU is near its expectation.
        assert result["layers"][name]["iou"] == pytest.approx(result["layers"][name]["random_iou"], abs=0.1)
    assert result["iou"] == inter / union == pytest.approx(a.overlap(b))
    assert mask_similarity(a, a)["iou"] == 1.0
    with pytest.raises(ValueError, match=r"the masks cover different parameters: only in the first \['extra'\]"):
        mask_similarity({**a, "extra": torch.ones(2, dtype=torch.bool)}, b)
    with pytest.raises(ValueError, match=r"mask 'w' has shape \(2,\) in the first and \(3,\) in the second"):
        mask_similarity({"w": torch.ones(2, dtype=torch.bool)}, {"w": torch.ones(3, dtype=torch.bool)})


def test_ticket_compare_prints_iou_per_layer(tmp_path, capsys):
    _ticket(0).save(tmp_path / "a.pt")
    _ticket(1).save(tmp_path / "b.pt")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lt-lightning"])
        assert main(["ticket", "compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = mask_similarity(_ticket(0).masks, _ticket(1).masks)
    assert lines[:2] == [f"A: {tmp_path / 'a.pt'}", f"B: {tmp_path / 'b.pt'}"]
    assert lines[2].split() == ["layer", "density", "A", "density", "B", "IoU", "random", "IoU"]
    for line, (name, layer) in zip(lines[3:], result["layers"].items()):
        assert line.split() == [name, f"{layer['density_a']:.4g}", f"{layer['density_b']:.4g}", f"{layer['iou']:.4f}",
                                f"{layer['random_iou']:.4f}"]
    assert lines[-1].split()[-2:] == [f"{result['iou']:.4f}", f"{result['random_iou']:.4f}"]
    other = tmp_path / "other.pt"
    Ticket(Masks({"w": torch.ones(3, dtype=torch.bool)}), {"w": torch.ones(3)}).save(other)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lt-lightning"])
        assert main(["ticket", "compare", str(tmp_path / "a.pt"), str(other)]) == 1
    assert capsys.readouterr().err.startswith("lt-lightning ticket: error: the masks cover different parameters")
    assert os.path.isfile(other)
