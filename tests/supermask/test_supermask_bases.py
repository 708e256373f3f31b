"""Pruning in another basis: coefficients <-> weights round trips, masks acting on coefficients (IMP's enforcement and
a supermask's selection), tickets in the basis, and the export back to plain weights."""

import pytest
import torch
from torch import nn

from lt_lightning.masks import MaskEnforcer, Masks
from lt_lightning.supermask import (
    BASES,
    SupermaskSpec,
    apply_supermask_ticket,
    export_weights,
    express_in_basis,
    frozen_tensors,
    subnetwork_masks,
    subnetwork_ticket,
)


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 5))


@pytest.mark.parametrize("shape", [(7, 13), (3, 2, 3, 3), (4, 2, 5)], ids=["linear", "conv2d", "conv1d"])
def test_coefficients_to_weights_to_coefficients(shape):
    dct = BASES["dct"]
    w = torch.randn(shape, dtype=torch.float64)
    c = dct(w, False)
    assert torch.allclose(dct(c, True), w) and torch.allclose(dct(dct(c, True), False), c)
    assert torch.allclose(c.norm(), w.norm())  # orthonormal
    assert not torch.allclose(c, w)
    assert BASES["identity"](w, False) is w


def test_a_smooth_row_is_a_few_coefficients():
    row = torch.cos(torch.linspace(0, 3.14159, 64, dtype=torch.float64)).view(1, -1)
    c = BASES["dct"](row, False)
    assert float(c[0, :4].norm() / c.norm()) > 0.99


def test_imp_masks_act_on_coefficients_and_export_gives_plain_weights():
    model = net()
    x = torch.randn(2, 2, 4, 4)
    before = model(x)
    names = express_in_basis(model, "dct")
    assert names == ["0.parametrizations.weight.original", "3.parametrizations.weight.original"]
    assert torch.allclose(model(x), before, atol=1e-6)
    params = dict(model.named_parameters())
    masks = Masks({n: torch.rand(params[n].shape, generator=torch.Generator().manual_seed(1)) < 0.3 for n in names})
    MaskEnforcer(model, masks).enforce_()  # what IMP does after every optimizer step, here on the coefficients
    weight = model[3].weight.detach()
    assert bool((BASES["dct"](weight, False).abs()[~masks[names[1]]] < 1e-6).all())  # pruned coefficients are zero
    assert int((weight == 0).sum()) < weight.numel() // 2  # the weights themselves are not sparse
    pruned = model(x)
    assert export_weights(model) == ["0.weight", "3.weight"]
    assert isinstance(model[3].weight, nn.Parameter) and not hasattr(model[3], "parametrizations")
    assert torch.allclose(model(x), pruned, atol=1e-6)


def test_a_supermask_in_the_dct_basis_selects_coefficients(tmp_path):
    model = net()
    SupermaskSpec(density=0.25, basis="dct", weight_init="kaiming_normal").apply(model)
    masks = subnetwork_masks(model)
    frozen = frozen_tensors(model)
    for name, mask in masks.items():  # the layer's weight is the inverse DCT of the kept coefficients
        assert int(mask.sum()) == round(0.25 * mask.numel())
        weight = model.get_submodule(name.rsplit(".", 1)[0]).weight
        assert torch.allclose(weight, BASES["dct"](frozen[name] * mask, True), atol=1e-6)
    ticket = subnetwork_ticket(model, SupermaskSpec(density=0.25, basis="dct").metadata())
    assert list(ticket.masks) == ["0.parametrizations.weight.original", "3.parametrizations.weight.original"]
    x = torch.randn(3, 2, 4, 4)
    with pytest.raises(ValueError, match="the ticket has entries the module lacks"):
        ticket.apply(net())  # a plain module does not hold coefficients
    ticket.save(tmp_path / "dct.pt")
    fresh = net()
    apply_supermask_ticket(tmp_path / "dct.pt", fresh)  # expresses the module in the ticket's basis first
    assert torch.allclose(fresh(x), model(x), atol=1e-6)
    export_weights(fresh)
    assert torch.allclose(fresh(x), model(x), atol=1e-6) and "0.weight" in dict(fresh.named_parameters())
