import torch
from torch import nn

from lt_lightning.masks import Masks
from lt_lightning.ticket import Ticket, apply_ticket, load_ticket


def _net():
    return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))


def test_save_load_apply_round_trip(tmp_path):
    torch.manual_seed(0)
    source = _net()
    masks = Masks({"0.weight": torch.rand(5, 6) > 0.5, "2.weight": torch.rand(3, 5) > 0.3})
    Ticket(masks, source.state_dict(), {"round": 2, "density": masks.density()}).save(tmp_path / "sub" / "t.pt")

    ticket = load_ticket(tmp_path / "sub" / "t.pt")
    assert ticket.masks == masks and ticket.metadata == {"round": 2, "density": masks.density()}
    fresh = _net()
    apply_ticket(tmp_path / "sub" / "t.pt", fresh)
    for name, value in source.state_dict().items():
        expected = value * masks[name] if name in masks else value
        assert torch.equal(fresh.state_dict()[name], expected), name


def test_apply_without_weights_keeps_own_initialization(tmp_path):
    masks = Masks({"0.weight": torch.rand(5, 6) > 0.5, "2.weight": torch.ones(3, 5, dtype=torch.bool)})
    Ticket(masks, _net().state_dict()).save(tmp_path / "t.pt")
    control = _net()
    own = control[0].weight.detach().clone()
    load_ticket(tmp_path / "t.pt").apply(control, weights=False)
    assert torch.equal(control[0].weight, own * masks["0.weight"])


def test_ticket_file_is_plain_data_and_small(tmp_path):
    net = nn.Linear(1000, 100)
    masks = Masks({"weight": torch.rand(100, 1000) > 0.9})
    Ticket(masks, net.state_dict()).save(tmp_path / "t.pt")
    payload = torch.load(tmp_path / "t.pt", weights_only=True)  # no code runs on load
    bits = payload["masks"]["masks"]["weight"]["bits"]
    assert bits.dtype == torch.uint8 and bits.numel() == 100 * 1000 // 8
