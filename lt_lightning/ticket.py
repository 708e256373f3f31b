"""Tickets: what a round leaves behind — masks, the weights to train them from, and metadata — on disk.

A ticket file is plain data read with ``torch.load(weights_only=True)``: it executes no code when loaded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lt_lightning.files import atomic_torch_save
from lt_lightning.masks import Masks, load_plain_state_dict, plain_state_dict, select_parameters
from lt_lightning.pruning.prune import check_regex

_FORMAT = "lt-lightning-ticket/1"


class TransferWarning(UserWarning):
    """A ticket applied to another architecture leaves some of the module's prunable layers dense."""


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
        own = plain_state_dict(module)
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
        re-initialised control of Frankle & Carbin. Names are plain (no ``torch.compile`` ``_orig_mod.``): a
        ticket of a compiled module applies to the plain one and the other way round.
        """
        self.check(module)
        if weights:
            load_plain_state_dict(module, self.state_dict)
        self.masks.apply_(module)
        return self.masks

    def transfer(self, module: nn.Module, *, rename: Mapping[str, str] | None = None, exclude: str | None = None,
                 weights: bool = True) -> Masks:
        r"""Apply the ticket to a module of another architecture, in place, and return its masks in the module's
        names: a ticket's backbone on a network with another head (Chen et al. 2021).

        Each ticket entry's name is mapped by ``rename`` (``{regex: replacement}``, applied in order with
        ``re.sub``); entries whose original name matches the regex ``exclude`` are left out (a head of another
        shape). The module's prunable layers (``Linear``/``ConvNd`` weights) that no mask reaches stay dense, and a
        :class:`TransferWarning` names them; its other entries the ticket lacks keep their values. ``ValueError``
        naming the entry: a mapped name the module lacks, two entries mapped to one name, another shape.

        >>> source = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> ticket = Ticket(Masks({"0.weight": torch.rand(3, 4) > 0.5, "2.weight": torch.rand(2, 3) > 0.5}),
        ...                 source.state_dict())
        >>> target = nn.ModuleDict({"body": nn.Linear(4, 3), "head": nn.Linear(3, 5)})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     masks = ticket.transfer(target, rename={r"^0\.": "body."}, exclude=r"^2\.")
        >>> list(masks)
        ['body.weight']
        >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
        prunable layers of ModuleDict without a mask in the ticket stay dense: ['head.weight']; the module keeps
        its own values of ['head.weight', 'head.bias'].
        """
        state, masks, source = self._renamed(rename, exclude)
        own = plain_state_dict(module)
        unknown = [name for name in state if name not in own]
        if unknown:
            raise ValueError(
                f"the ticket's {source[unknown[0]]!r} (as {unknown[0]!r}) names no entry of {type(module).__name__};"
                f" map it with rename= or leave it out with exclude=. The module's entries: {list(own)[:8]}."
            )
        for name, value in state.items():
            if tuple(value.shape) != tuple(own[name].shape):
                raise ValueError(
                    f"the ticket's {source[name]!r} has shape {tuple(value.shape)} but {type(module).__name__}'s"
                    f" {name!r} has {tuple(own[name].shape)}: leave it out with exclude= (a head of its own) or map"
                    " it to the entry it corresponds to with rename=."
                )
        if not masks:
            raise ValueError(f"no masked entry of the ticket is transferred (exclude={exclude!r}): nothing to prune.")
        transferred = Masks(masks)
        transferred.check(module)
        try:
            prunable = select_parameters(module)
        except ValueError:  # no Linear or ConvNd: no layer the ticket could have missed
            prunable = []
        dense = [n for n in prunable if n not in transferred]
        own_values = [k for k in own if k not in state] if weights else []
        if dense or own_values:
            told = [f"prunable layers of {type(module).__name__} without a mask in the ticket stay dense:"
                    f" {dense}"] if dense else []
            told += [f"the module keeps its own values of {own_values[:8]}"] if own_values else []
            warnings.warn("; ".join(told) + ".", TransferWarning, stacklevel=2)
        if weights:
            load_plain_state_dict(module, state, strict=False)
        transferred.apply_(module)
        return transferred

    def _renamed(self, rename: Mapping[str, str] | None, exclude: str | None
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, str]]:
        """The state_dict and masks under the mapped names, and each mapped name's original."""
        patterns = [(check_regex("rename key", key), replacement) for key, replacement in (rename or {}).items()]
        dropped = check_regex("exclude", exclude) if exclude is not None else None
        for what, pattern in [*((f"rename key {p.pattern!r}", p) for p, _ in patterns),
                              *([(f"exclude={exclude!r}", dropped)] if dropped is not None else [])]:
            if not any(pattern.search(name) for name in self.state_dict):
                raise ValueError(f"{what} matches no entry of the ticket; its entries: {list(self.state_dict)[:8]}.")
        state: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        source: dict[str, str] = {}
        for name, value in self.state_dict.items():
            if dropped is not None and dropped.search(name):
                continue
            target = name
            for pattern, replacement in patterns:
                target = pattern.sub(replacement, target)
            if target in source:
                raise ValueError(f"rename maps both {source[target]!r} and {name!r} to {target!r}.")
            source[target], state[target] = name, value
            if name in self.masks:
                masks[target] = self.masks[name]
        return state, masks, source


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


def apply_ticket(path: str | os.PathLike, module: nn.Module, *, weights: bool = True,
                 rename: Mapping[str, str] | None = None, exclude: str | None = None) -> Ticket:
    """Load the ticket at ``path`` into ``module`` (see :meth:`Ticket.apply`; with ``rename`` or ``exclude``,
    into a module of another architecture: :meth:`Ticket.transfer`) and return it."""
    ticket = load_ticket(path)
    if rename is None and exclude is None:
        ticket.apply(module, weights=weights)
    else:
        ticket.transfer(module, rename=rename, exclude=exclude, weights=weights)
    return ticket

