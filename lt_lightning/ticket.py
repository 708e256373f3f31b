"""Tickets: what a round leaves behind — masks, the weights to train them from, and metadata — on disk.

A ticket file is plain data read with ``torch.load(weights_only=True)``: it executes no code when loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lt_lightning.files import atomic_torch_save
from lt_lightning.masks import Masks

_FORMAT = "lt-lightning-ticket/1"


@dataclass
class Ticket:
    """Masks, the (masked) weights to train them from, and metadata (round, densities, metrics, ...).

    >>> net = nn.Linear(4, 2)
    >>> ticket = Ticket(Masks({"weight": torch.rand(2, 4) > 0.5}), net.state_dict(), {"round": 1})
    >>> fresh = nn.Linear(4, 2)
    >>> _ = ticket.apply(fresh)
    >>> bool((fresh.weight[~ticket.masks["weight"]] == 0).all())
    True
    """

    masks: Masks
    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ticket to ``path`` atomically (parent folders are created)."""
        payload = {"format": _FORMAT, "masks": self.masks.pack(), "state_dict": self.state_dict,
                   "metadata": self.metadata}
        atomic_torch_save(payload, path)

    @classmethod
    def from_state(cls, state_dict: Mapping[str, Tensor], masks: Masks, metadata: Mapping[str, Any] | None = None
                   ) -> Ticket:
        """A ticket of ``masks`` on a copy of ``state_dict`` (e.g. a rewind snapshot) on CPU, pruned weights zeroed.

        >>> t = Ticket.from_state({"w": torch.ones(3)}, Masks({"w": torch.tensor([True, False, True])}))
        >>> t.state_dict["w"].tolist()
        [1.0, 0.0, 1.0]
        """
        weights = {k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        for name, mask in masks.items():
            weights[name].mul_(mask.to(weights[name].dtype).cpu())
        return cls(masks.to("cpu"), weights, dict(metadata or {}))

    def check(self, module: nn.Module) -> None:
        """Raise ``ValueError`` if the ticket does not fit ``module``'s architecture, naming the first mismatch."""
        own = module.state_dict()
        missing = [k for k in self.state_dict if k not in own]
        extra = [k for k in own if k not in self.state_dict]
        if missing or extra:
            raise ValueError(
                f"the ticket does not fit {type(module).__name__}: the ticket has entries the module lacks"
                f" {missing[:5]} and lacks entries the module has {extra[:5]}."
            )
        for key, value in self.state_dict.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"the ticket does not fit {type(module).__name__}: {key!r} has shape {tuple(value.shape)} in the"
                    f" ticket and {tuple(own[key].shape)} in the module."
                )
        self.masks.check(module)

    def apply(self, module: nn.Module, *, weights: bool = True) -> Masks:
        """Load the ticket into ``module`` in place and return its masks.

        ``weights=False`` keeps the module's own weights and only zeroes the pruned ones: the randomly
        re-initialised control of Frankle & Carbin.
        """
        self.check(module)
        if weights:
            module.load_state_dict(self.state_dict)
        self.masks.apply_(module)
        return self.masks


def load_ticket(path: str | os.PathLike) -> Ticket:
    """Read a ticket written by :meth:`Ticket.save`; ``ValueError`` naming the file if it is not one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ticket file at {os.fspath(path)!r}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file; all mean the same to the user
        raise ValueError(f"{os.fspath(path)!r} is not a readable ticket file ({type(err).__name__}: {err}).") from err
    if not isinstance(payload, Mapping) or payload.get("format") != _FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(f"{os.fspath(path)!r} is not a ticket: expected format {_FORMAT!r}, found {found!r}.")
    return Ticket(Masks.unpack(payload["masks"]), dict(payload["state_dict"]), dict(payload["metadata"]))


def apply_ticket(path: str | os.PathLike, module: nn.Module, *, weights: bool = True) -> Ticket:
    """Load the ticket at ``path`` into ``module`` (see :meth:`Ticket.apply`) and return it."""
    ticket = load_ticket(path)
    ticket.apply(module, weights=weights)
    return ticket
