"""Binary tickets: a biprop subnetwork stored bit-packed, and its size against the dense float32 model.

A biprop layer computes with ``alpha * sign(w)`` on its kept weights and 0 elsewhere, so it is stored exactly by its
mask (1 bit per weight), the signs of its kept weights (1 bit per kept weight) and one float32 ``alpha``. Every other
entry (biases, norms, layers left dense) stays as it is. A binary ticket file is plain data
(``torch.load(weights_only=True)`` reads it).

>>> from lt_lightning.masks import Masks
>>> w = torch.tensor([[0.5, -0.5, 0.0, 0.5]])
>>> ticket = Ticket(Masks({"w": w != 0}), {"w": w, "b": torch.zeros(3)}, {"method": "biprop"})
>>> binary = BinaryTicket.from_ticket(ticket)
>>> binary.packed_bytes(), binary.dense_bytes()   # mask 1 byte + signs 1 byte + alpha 4; b 12 | 7 floats
(18, 28)
>>> torch.equal(binary.to_ticket().state_dict["w"], w)
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lt_lightning.files import atomic_torch_save
from lt_lightning.masks import Masks, pack_bits, unpack_bits
from lt_lightning.ticket import Ticket, load_ticket

_FORMAT = "lt-lightning-binary-ticket/1"
_FLOAT32_BYTES = 4


@dataclass
class BinaryTicket:
    """Masks, the signs of the kept weights (``True`` = positive) in flat mask order, one ``alpha`` per masked
    entry, the other entries of the state dict, and metadata."""

    masks: Masks
    signs: dict[str, Tensor]
    alpha: dict[str, float]
    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_ticket(cls, ticket: Ticket) -> BinaryTicket:
        """The binary form of a ticket whose masked entries are ``alpha * sign`` on the kept weights (biprop's);
        ``ValueError`` naming the first entry that is not."""
        signs, alpha = {}, {}
        for name, mask in ticket.masks.items():
            kept = ticket.state_dict[name].detach().cpu().float()[mask.cpu()]
            magnitudes = kept.abs()
            if kept.numel() and not bool((magnitudes == magnitudes[0]).all() & (magnitudes[0] > 0)):
                raise ValueError(f"{name!r} keeps weights of {magnitudes.unique().numel()} magnitudes: a binary ticket"
                                 " needs one, alpha * sign(w) (method='biprop').")
            signs[name] = kept > 0
            alpha[name] = float(magnitudes[0]) if kept.numel() else 0.0
        others = {k: v for k, v in ticket.state_dict.items() if k not in ticket.masks}
        return cls(ticket.masks.to("cpu"), signs, alpha, others, dict(ticket.metadata))

    def to_ticket(self) -> Ticket:
        """The ticket with the weights restored: ``alpha * sign`` on the kept positions, 0 elsewhere (float32)."""
        state = dict(self.state_dict)
        for name, mask in self.masks.items():
            weight = torch.zeros(mask.shape)
            weight[mask] = torch.where(self.signs[name], self.alpha[name], -self.alpha[name])
            state[name] = weight
        return Ticket(self.masks, state, dict(self.metadata))

    def packed_bytes(self) -> int:
        """Bytes of the payload: packed mask and sign bits, the alphas, the other entries as they are."""
        bits = sum(-(-m.numel() // 8) + -(-int(m.sum()) // 8) + _FLOAT32_BYTES for m in self.masks.values())
        return bits + sum(v.numel() * v.element_size() for v in self.state_dict.values())

    def dense_bytes(self) -> int:
        """Bytes of the same entries as a dense float32 model."""
        return _FLOAT32_BYTES * (self.masks.numel() + sum(v.numel() for v in self.state_dict.values()))

    def summary(self) -> str:
        """One line: packed size against dense float32."""
        packed, dense = self.packed_bytes(), self.dense_bytes()
        return (f"binary ticket: {packed:,} bytes packed (1 bit per weight for the mask, 1 per kept weight for its"
                f" sign, one float32 alpha per layer) vs {dense:,} bytes as dense float32: {dense / packed:.1f}x"
                " smaller")

    def save(self, path: str | os.PathLike) -> None:
        """Write the binary ticket to ``path`` atomically."""
        payload = {"format": _FORMAT, "masks": self.masks.pack(),
                   "signs": {n: pack_bits(s) for n, s in self.signs.items()},
                   "alpha": dict(self.alpha), "state_dict": self.state_dict, "metadata": self.metadata}
        atomic_torch_save(payload, path)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BinaryTicket:
        masks = Masks.unpack(payload["masks"])
        signs = {n: unpack_bits(bits, (int(masks[n].sum()),)) for n, bits in payload["signs"].items()}
        return cls(masks, signs, dict(payload["alpha"]), dict(payload["state_dict"]), dict(payload["metadata"]))


def read_ticket(path: str | os.PathLike) -> tuple[Ticket, BinaryTicket | None]:
    """A ticket file, plain or binary: the ticket (a binary one with its weights restored) and the binary form,
    ``None`` for a plain ticket. ``ValueError`` naming the file if it is neither."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a readable torch file: load_ticket says why, naming the file
        payload = None
    if isinstance(payload, Mapping) and payload.get("format") == _FORMAT:
        binary = BinaryTicket.from_payload(payload)
        return binary.to_ticket(), binary
    return load_ticket(path), None
