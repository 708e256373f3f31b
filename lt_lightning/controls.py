"""Controls of a ticket: the networks a ticket must beat to be called a *winning* ticket. Chosen by name.

A control is a function ``fn(ticket, *, init, generator) -> Ticket`` registered with :func:`register_control`: it
changes the ticket's masks, its weights, or both, and everything else stays as in the ticket. ``init`` is the
``state_dict`` of the module freshly initialised by its own initializer (the caller builds it: a new instance's
``module.state_dict()``), for the controls that draw new weights; ``generator`` draws every random choice, so that
:func:`make_control` is reproducible by its ``seed``.

Every control keeps the pruned weights exactly zero. Densities (fractions of the masked weights kept) stay exactly the
ticket's, per layer, except for ``random_ticket``, which keeps the overall number of weights and spreads it by smart
ratios.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
>>> ticket = Ticket(Masks({"0.weight": torch.rand(4, 6) > 0.5, "2.weight": torch.rand(2, 4) > 0.5}),
...                 net.state_dict())
>>> fresh = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2)).state_dict()
>>> control = make_control("reinit", ticket, seed=0, init=fresh)
>>> control.masks == ticket.masks, control.metadata
(True, {'control': 'reinit', 'control_seed': 0})
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Protocol

import torch
from torch import Tensor

from lt_lightning.masks import Masks
from lt_lightning.pruning.allocation import _counts, smart_ratio_densities
from lt_lightning.registry import Registry
from lt_lightning.ticket import Ticket
from lt_lightning.validation import check_seed

__all__ = ["CONTROLS", "NEEDS_INIT", "NEEDS_REWIND_POINT", "ControlFn", "init_file", "make_control", "register_control"]


class ControlFn(Protocol):
    def __call__(self, ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
        ...


CONTROLS: Registry[ControlFn] = Registry("control")

#: Names of the controls that draw new weights from ``init``: :func:`make_control` refuses them without it.
NEEDS_INIT: set[str] = set()

#: Names of the controls whose ``init`` is the unpruned weights of the ticket's rewind point, not a fresh
#: initialization (see :func:`init_file`).
NEEDS_REWIND_POINT: set[str] = set()


def register_control(
    name: str, *, needs_init: bool = False, needs_rewind_point: bool = False
) -> Callable[[ControlFn], ControlFn]:
    """Register ``fn(ticket, *, init, generator) -> Ticket`` under ``name``; use as a decorator. ``needs_init=True``
    declares that the control takes weights from ``init``; ``needs_rewind_point=True`` that ``init`` must be the
    unpruned rewind-point weights (it implies ``needs_init``).

    >>> @register_control("negate")
    ... def _negate(ticket, *, init, generator):
    ...     return Ticket(ticket.masks, {k: -v for k, v in ticket.state_dict.items()})
    >>> "negate" in CONTROLS
    True
    >>> del CONTROLS["negate"]
    """

    def decorator(fn: ControlFn) -> ControlFn:
        CONTROLS.register(name)(fn)
        if needs_init or needs_rewind_point:
            NEEDS_INIT.add(name)
        if needs_rewind_point:
            NEEDS_REWIND_POINT.add(name)
        return fn

    return decorator


def make_control(name: str, ticket: Ticket, *, seed: int, init: Mapping[str, Tensor] | None = None) -> Ticket:
    """The control ``name`` of ``ticket``, drawn with ``seed``: the same seed gives the same ticket.

    The result's metadata is a copy of the ticket's plus ``control`` and ``control_seed``; the rest of it (densities,
    metrics, ...) still describes the source ticket. ``reinit`` and ``keep_signs`` draw nothing: all their
    randomness is in ``init``, so seed the module that builds it.

    >>> from torch import nn
    >>> net = nn.Linear(8, 4)
    >>> ticket = Ticket(Masks({"weight": torch.arange(32).reshape(4, 8) % 3 == 0}), net.state_dict())
    >>> a = make_control("shuffle_masks", ticket, seed=1, init=nn.Linear(8, 4).state_dict())
    >>> a.masks.layer_densities() == ticket.masks.layer_densities(), a.masks == ticket.masks
    (True, False)
    """
    CONTROLS.check(name)
    check_seed("seed", seed)  # other seeds alias these in torch's generator: two seeds would give the same control
    _check_ticket(ticket)
    if init is None and name in NEEDS_INIT:
        raise ValueError(
            f"control {name!r} takes weights from init: pass init=, the module's fresh state_dict (a newly built"
            " instance's module.state_dict())."
        )
    if init is not None:
        _check_init(init, ticket.state_dict)
    out = CONTROLS[name](ticket, init=init, generator=torch.Generator().manual_seed(seed))
    _check_result(name, out, ticket)
    return Ticket(out.masks, out.state_dict, {**copy.deepcopy(ticket.metadata), **out.metadata,
                                              "control": name, "control_seed": seed})


def init_file(name: str, ticket: Ticket, path: str | os.PathLike) -> str | None:
    """Where control ``name`` of the ticket read from ``path`` takes ``init`` from: the rewind point's file for the
    controls in :data:`NEEDS_REWIND_POINT`, ``None`` for the module's own fresh initialization.

    IMPCallback writes the unpruned rewind weights beside its tickets as a dense ticket and names it, relative to the
    ticket's folder, in each ticket's ``metadata["rewind_point"]``. A ticket without one that was rewound to step 0
    (an lt-lightning 0.1 ticket) gets ``None``: a fresh draw of the module's initializer has the distribution of its
    pruned weights. Any other ticket has no weights for the positions such a control newly keeps: ``ValueError``.

    >>> init_file("reinit", Ticket(Masks({"w": torch.ones(2)}), {"w": torch.ones(2)}), "round_01.pt") is None
    True
    >>> ticket = Ticket(Masks({"w": torch.ones(2)}), {"w": torch.ones(2)}, {"rewind_point": "rewind_point.pt"})
    >>> init_file("shuffle_masks", ticket, "/nowhere/round_01.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: control 'shuffle_masks' takes the unpruned weights ... there is no file '/nowhere/rewind_point.pt'...
    """
    if name not in NEEDS_REWIND_POINT:
        return None
    path = os.fspath(path)
    point = ticket.metadata.get("rewind_point")
    if point:
        file = os.path.join(os.path.dirname(path), point)
        if not os.path.isfile(file):
            raise ValueError(f"control {name!r} takes the unpruned weights of the ticket's rewind point: {path!r}"
                             f" names {point!r}, but there is no file {file!r}; keep it beside the ticket.")
        return file
    if ticket.metadata.get("rewind_step") == 0:
        return None
    raise ValueError(
        f"control {name!r} needs weights for the positions it newly keeps, and the ticket {path!r} has none: it names"
        f" no rewind point (metadata 'rewind_point', written by IMPCallback since lt-lightning 0.2) and was rewound to"
        f" step {ticket.metadata.get('rewind_step', 'unknown')!s}, not to the initialization. Save the unpruned"
        " rewind weights as a dense ticket beside it and name that file in its metadata['rewind_point']."
    )


@register_control("reinit", needs_init=True)
def reinit(ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
    """The ticket's masks on new weights (Frankle & Carbin 2019): every entry of the state_dict (biases, norms and
    buffers too) from ``init``, pruned weights zeroed."""
    return _build(ticket.masks, _like(_need(init), ticket.state_dict))


@register_control("shuffle_masks", needs_rewind_point=True)
def shuffle_masks(ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
    """Each layer's mask randomly permuted (the same number of weights kept per layer), on the ticket's weights: the
    "random rearrangement" of Su et al. 2020. Entries without a mask (biases, buffers) are the ticket's.

    Su et al. apply the permuted mask to the *unpruned* initial weights, but a ticket stores its weights masked: the
    weights at positions it pruned are zero there. A position kept by both masks keeps the ticket's weight; a newly
    kept position takes its weight from ``init``. With ``init`` the unpruned weights of the ticket's rewind point
    (they agree with the ticket where it keeps weights) this is exactly Su et al.'s control. With ``init`` a fresh
    initialization, the new positions hold fresh draws of the same initializer: the same distribution when the ticket
    rewinds to initialization; after rewinding to a later step, pass the rewind-point weights instead.
    """
    init = _like(_need(init), ticket.state_dict)
    masks = Masks({n: _permute(m, generator) for n, m in ticket.masks.items()})
    state = dict(ticket.state_dict)
    for n, m in ticket.masks.items():
        state[n] = torch.where(m.to(state[n].device), state[n], init[n])
    return _build(masks, state)


@register_control("shuffle_weights")
def shuffle_weights(ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
    """The ticket's masks and, within each layer, its kept weights' values permuted among the kept positions (Su et
    al. 2020): the same layer-wise weight distribution, placed at random. Entries without a mask are the ticket's."""
    state = dict(ticket.state_dict)
    for n, m in ticket.masks.items():
        keep = m.to(state[n].device)
        weight, values = state[n].clone(), state[n][keep]
        weight[keep] = values[torch.randperm(values.numel(), generator=generator).to(values.device)]
        state[n] = weight
    return _build(ticket.masks, state)


@register_control("keep_signs", needs_init=True)
def keep_signs(ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
    """The ticket's masks, magnitudes from ``init`` and signs from the ticket (Zhou et al. 2019, "reinit, same
    sign"): how much of the ticket is its signs. A kept weight that is exactly zero in the ticket has no sign and
    keeps ``init``'s. Entries without a mask (biases, norms, buffers) come from ``init``, as in ``reinit``."""
    state = _like(_need(init), ticket.state_dict)
    for n in ticket.masks:
        weight = ticket.state_dict[n]
        state[n] = state[n].abs() * torch.where(weight != 0, weight.sign(), state[n].sign())
    return _build(ticket.masks, state)


@register_control("random_ticket", needs_init=True)
def random_ticket(ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator) -> Ticket:
    """Random masks keeping the ticket's overall number of weights, spread over layers by smart ratios (Su et al.
    2020, :func:`~lt_lightning.pruning.allocation.smart_ratio_densities`, quadratic decay, 30% in the last layer), on
    ``init``'s weights; every other entry from ``init`` too."""
    masks, density = ticket.masks, ticket.masks.density()
    densities = smart_ratio_densities({n: m.numel() for n, m in masks.items()}, density)
    return _build(_random_masks(masks, _counts(densities, masks, density), generator),
                  _like(_need(init), ticket.state_dict))


@register_control("random_ticket_layerwise", needs_init=True)
def random_ticket_layerwise(
    ticket: Ticket, *, init: Mapping[str, Tensor] | None, generator: torch.Generator
) -> Ticket:
    """Random masks keeping the ticket's number of weights in every layer, on ``init``'s weights; every other entry
    from ``init`` too."""
    counts = {n: int(m.sum()) for n, m in ticket.masks.items()}
    return _build(_random_masks(ticket.masks, counts, generator), _like(_need(init), ticket.state_dict))


def _need(init: Mapping[str, Tensor] | None) -> Mapping[str, Tensor]:
    if init is None:  # make_control checks first; this guards direct calls
        raise ValueError("this control takes weights from init: pass the module's fresh state_dict.")
    return init


def _like(init: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``init``'s entries, copied, on the devices and in the dtypes of the ticket's."""
    return {k: init[k].detach().to(device=v.device, dtype=v.dtype, copy=True) for k, v in state.items()}


def _build(masks: Masks, state: Mapping[str, Tensor]) -> Ticket:
    """A ticket with its own copies of the tensors and its pruned weights set to zero (``where``, not a product,
    so that no inf or NaN survives at a pruned position)."""
    out = {k: v.detach().clone() for k, v in state.items()}
    for n, m in masks.items():
        out[n] = out[n].masked_fill(~m.to(out[n].device), 0)
    return Ticket(masks, out)


def _permute(mask: Tensor, generator: torch.Generator) -> Tensor:
    flat = mask.reshape(-1)
    return flat[torch.randperm(flat.numel(), generator=generator).to(flat.device)].reshape(mask.shape)


def _random_masks(masks: Masks, counts: Mapping[str, int], generator: torch.Generator) -> Masks:
    """For each layer, ``counts[name]`` kept positions drawn uniformly without replacement."""
    out = {}
    for n, m in masks.items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=generator)[: counts[n]]] = True
        out[n] = flat.reshape(m.shape).to(m.device)
    return Masks(out)


def _check_ticket(ticket: Ticket) -> None:
    for n, m in ticket.masks.items():
        if n not in ticket.state_dict:
            raise ValueError(f"mask {n!r} names no entry of the ticket's state_dict; its entries: "
                             f"{list(ticket.state_dict)[:8]}.")
        if tuple(m.shape) != tuple(ticket.state_dict[n].shape):
            raise ValueError(f"mask {n!r} has shape {tuple(m.shape)} but the ticket's weight has shape"
                             f" {tuple(ticket.state_dict[n].shape)}.")


def _check_init(init: Mapping[str, Tensor], state: Mapping[str, Tensor]) -> None:
    """``ValueError`` naming the first entry that ``init`` lacks, has extra, or holds with another shape."""
    for key in state:
        if key not in init:
            raise ValueError(f"init has no entry {key!r} that the ticket's state_dict has: init must be the"
                             " state_dict of the same architecture.")
        if tuple(init[key].shape) != tuple(state[key].shape):
            raise ValueError(f"init's {key!r} has shape {tuple(init[key].shape)} but the ticket's has"
                             f" {tuple(state[key].shape)}: init must be the state_dict of the same architecture.")
    for key in init:
        if key not in state:
            raise ValueError(f"init has an entry {key!r} that the ticket's state_dict lacks: init must be the"
                             " state_dict of the same architecture.")


def _check_result(name: str, out: Ticket, ticket: Ticket) -> None:
    """A registered control must return a ticket of the same architecture with its pruned weights at zero."""
    if list(out.masks) != list(ticket.masks) or set(out.state_dict) != set(ticket.state_dict):
        raise ValueError(f"control {name!r} returned a ticket over other parameters or state_dict entries.")
    for n, m in out.masks.items():
        weight = out.state_dict[n]
        if tuple(m.shape) != tuple(weight.shape) or bool(weight[~m.to(weight.device)].any()):
            raise ValueError(f"control {name!r} returned weights of {n!r} that do not fit its mask (shape, or"
                             " nonzero pruned weights).")
