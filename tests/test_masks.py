import pytest
import torch
from torch import nn

from lt_lightning.masks import MaskEnforcer, Masks, pack_bits, select_parameters, unpack_bits


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.BatchNorm2d(2)
        self.emb = nn.Embedding(5, 3)
        self.fc = nn.Linear(8, 4)
        self.out = nn.Linear(4, 2)


def test_default_selection_is_linear_and_conv_weights_only():
    assert select_parameters(Net()) == ["conv.weight", "fc.weight", "out.weight"]


def test_include_exclude_and_types():
    net = Net()
    assert select_parameters(net, include=r"bias") == ["conv.bias", "norm.bias", "fc.bias", "out.bias"]
    assert select_parameters(net, exclude=r"^out\.") == ["conv.weight", "fc.weight"]
    assert select_parameters(net, types=["Embedding", "Linear"]) == ["emb.weight", "fc.weight", "out.weight"]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"include": "nothing_here"}, "include='nothing_here' matches no parameter"),
    ({"exclude": "nothing_here"}, "exclude='nothing_here' matches no prunable parameter"),
    ({"types": ["LSTM"]}, "no prunable parameters"),
])
def test_selection_errors_name_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        select_parameters(Net(), **kwargs)


def test_masks_validate_values():
    assert Masks({"w": torch.tensor([0.0, 1.0])})["w"].dtype == torch.bool
    with pytest.raises(ValueError, match="other than 0 and 1"):
        Masks({"w": torch.tensor([0.5])})
    with pytest.raises(ValueError, match="empty"):
        Masks({})


def test_density_counts_masked_parameters_only():
    m = Masks({"a": torch.tensor([True, False, False, False]), "b": torch.ones(4, dtype=torch.bool)})
    assert m.density() == pytest.approx(5 / 8)
    assert m.layer_densities() == {"a": 0.25, "b": 1.0}


@pytest.mark.parametrize("numel", [1, 7, 8, 9, 1000])
def test_bit_packing_round_trips(numel):
    g = torch.Generator().manual_seed(numel)
    mask = torch.rand(numel, generator=g) > 0.5
    bits = pack_bits(mask)
    assert bits.dtype == torch.uint8 and bits.numel() == -(-numel // 8)
    assert torch.equal(unpack_bits(bits, (numel,)), mask)


def test_pack_keeps_names_and_shapes():
    m = Masks({"x.weight": torch.rand(3, 5) > 0.3, "y.weight": torch.rand(2, 2, 3) > 0.6})
    back = Masks.unpack(m.pack())
    assert back == m and [tuple(v.shape) for v in back.values()] == [(3, 5), (2, 2, 3)]
    with pytest.raises(ValueError, match="not packed masks"):
        Masks.unpack({"masks": {}})


def test_check_names_the_mismatch():
    net = Net()
    with pytest.raises(ValueError, match="does not have: missing.weight"):
        Masks({"missing.weight": torch.ones(2, dtype=torch.bool)}).check(net)
    with pytest.raises(ValueError, match="'fc.weight' has shape \\(3, 3\\)"):
        Masks({"fc.weight": torch.ones(3, 3, dtype=torch.bool)}).check(net)


def test_overlap_is_intersection_over_union():
    a = Masks({"w": torch.tensor([1, 1, 1, 0])})
    b = Masks({"w": torch.tensor([0, 1, 1, 1])})
    assert a.overlap(b) == pytest.approx(2 / 4)
    assert a.overlap(a) == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_enforcer_zeroes_weights_and_grads(dtype):
    net = Net().to(dtype)
    masks = Masks({n: torch.rand_like(p, dtype=torch.float32) > 0.5 for n, p in net.named_parameters()
                   if n in select_parameters(net)})
    enforcer = MaskEnforcer(net, masks)
    params = dict(net.named_parameters())
    for p in params.values():
        p.grad = torch.ones_like(p)
    enforcer.enforce_()
    enforcer.mask_grads_()
    for name, mask in masks.items():
        assert (params[name][~mask] == 0).all() and (params[name].grad[~mask] == 0).all()
        assert (params[name].grad[mask] == 1).all()
    assert (params["fc.bias"].grad == 1).all()


def test_linear_weights_tied_parametrized_and_in_attention_are_prunable():
    from torch.nn.utils import parametrizations, parametrize

    from lt_lightning.masks import selection_notes

    class Orthogonalish(nn.Module):
        def forward(self, x):
            return x - x.mean()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.normed = parametrizations.weight_norm(nn.Linear(8, 8))
            self.spectral = parametrizations.spectral_norm(nn.Linear(8, 8))
            self.mixed = nn.Linear(8, 8)
            parametrize.register_parametrization(self.mixed, "weight", Orthogonalish())
            self.head = nn.Linear(8, 10, bias=False)
            self.head.weight = self.emb.weight  # tied

    net = Net()
    names = select_parameters(net)
    assert names == ["emb.weight", "attn.in_proj_weight", "attn.out_proj.weight",
                     "normed.parametrizations.weight.original1", "spectral.parametrizations.weight.original"]
    notes = selection_notes(net, names)
    assert any("head.weight is the same tensor as emb.weight (tied)" in n for n in notes)
    assert any(n.startswith("mixed.weight is computed by the parametrization ['Orthogonalish']") for n in notes)
    # Zeros of the stored tensors are zeros of the weights the layers use.
    masks = Masks({n: torch.rand_like(p) > 0.5 for n, p in net.named_parameters() if n in names})
    masks.apply_(net)
    assert bool((net.normed.weight[~masks["normed.parametrizations.weight.original1"]] == 0).all())
    assert bool((net.spectral.weight[~masks["spectral.parametrizations.weight.original"]] == 0).all())
    assert bool((net.head.weight[~masks["emb.weight"]] == 0).all())


def test_old_style_weight_norm_prunes_the_direction():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        layer = torch.nn.utils.weight_norm(nn.Linear(4, 3))
    assert select_parameters(nn.Sequential(layer)) == ["0.weight_v"]


def test_no_left_dense_note_when_the_stored_tensors_are_chosen():
    from torch.nn.utils import parametrize

    from lt_lightning.masks import selection_notes

    class Shift(nn.Module):
        def forward(self, x):
            return x + 1.0

    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    parametrize.register_parametrization(net[1], "weight", Shift())
    assert any("1.weight is computed by the parametrization" in n for n in selection_notes(net, ["0.weight"]))
    chosen = select_parameters(net, include=r"weight$|original$")
    assert "1.parametrizations.weight.original" in chosen
    assert not any("1.weight is computed" in n for n in selection_notes(net, chosen))
