"""Binary tickets: bit-packed masks and signs plus one alpha per layer, their size, and the round trip through a file."""

import pytest
import torch
from torch import nn

from lt_lightning.masks import Masks
from lt_lightning.supermask import BinaryTicket, SupermaskSpec, read_ticket, subnetwork_ticket
from lt_lightning.ticket import Ticket


def biprop_ticket(density=0.3):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 37), nn.ReLU(), nn.Linear(37, 3))
    SupermaskSpec(density=density, method="biprop", weight_init="signed_constant").apply(model)
    return subnetwork_ticket(model, {"method": "biprop"})


def test_packed_size_counts_one_bit_per_weight_and_per_kept_sign():
    ticket = biprop_ticket()
    binary = BinaryTicket.from_ticket(ticket)
    kept = {n: int(m.sum()) for n, m in ticket.masks.items()}
    assert kept == {"0.weight": round(0.3 * 1850), "2.weight": round(0.3 * 111)}
    masks_and_signs = (-(-1850 // 8) + -(-kept["0.weight"] // 8) + 4) + (-(-111 // 8) + -(-kept["2.weight"] // 8) + 4)
    assert binary.packed_bytes() == masks_and_signs + 4 * (37 + 3)
    assert binary.dense_bytes() == 4 * (1850 + 111 + 37 + 3)


def test_round_trip_through_a_file_restores_every_weight(tmp_path):
    ticket = biprop_ticket()
    binary = BinaryTicket.from_ticket(ticket)
    binary.save(tmp_path / "b.pt")
    restored, again = read_ticket(tmp_path / "b.pt")
    assert again is not None and again.alpha == binary.alpha and restored.masks == ticket.masks
    for name, value in ticket.state_dict.items():
        assert torch.equal(restored.state_dict[name], value), name
    assert restored.metadata == {"method": "biprop"}
    ticket.save(tmp_path / "plain.pt")
    assert read_ticket(tmp_path / "plain.pt")[1] is None


def test_a_ticket_with_real_valued_weights_is_not_binary():
    w = torch.tensor([[0.5, -0.25, 0.0]])
    with pytest.raises(ValueError, match=r"'w' keeps weights of 2 magnitudes: a binary ticket needs one"):
        BinaryTicket.from_ticket(Ticket(Masks({"w": w != 0}), {"w": w}))


def test_read_ticket_names_a_file_that_is_no_ticket(tmp_path):
    (tmp_path / "junk.pt").write_text("not a ticket")
    with pytest.raises(ValueError, match="is not a readable ticket file"):
        read_ticket(tmp_path / "junk.pt")
