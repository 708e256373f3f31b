"""Masks: a validated mapping from parameter name to a boolean keep-mask, and its fused enforcement.

Vocabulary used everywhere in lt-lightning: *density* is the fraction of weights kept, *sparsity* is ``1 - density``.
Densities are counted on the **prunable parameters only** (the ones that have a mask), never on biases, norms or
other parameters that are not masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

#: Module types whose weights are prunable by default: Linear, every ConvNd (transposed ones included), and the
#: input projections of MultiheadAttention (Linear weights kept outside a Linear).
DEFAULT_TYPES: tuple[str, ...] = ("Linear", "_ConvNd", "MultiheadAttention")

# The weight attributes of a type other than ``weight``.
_WEIGHT_NAMES = {"MultiheadAttention": ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")}
# Parametrizations that map a zero of the stored tensor to a zero weight (they scale rows or the whole tensor):
# pruning the stored tensor prunes the weight. Others (orthogonal, ...) mix entries, so masks would not hold.
_SCALING_PARAMETRIZATIONS = {"_WeightNorm", "_SpectralNorm"}
# Old-style weight_norm / spectral_norm keep the direction in a parameter beside a plain ``weight`` tensor.
_HOOK_REPARAMETRIZED = ("weight_v", "weight_orig")

_FORMAT = "lt-lightning-masks/1"

# torch.compile wraps a module in an OptimizedModule that holds it as ``_orig_mod``: a component of the names of the
# compiled module's tensors, and of no plain module's.
_COMPILED = "_orig_mod"


def _type_names(module: nn.Module) -> set[str]:
    return {cls.__name__ for cls in type(module).__mro__}


def _preview(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def plain_name(name: str) -> str:
    """``name`` without the ``_orig_mod`` components that ``torch.compile`` adds: masks and tickets name tensors as
    the plain module does, so that they apply to the module compiled or not.

    >>> plain_name("net._orig_mod.0.weight"), plain_name("0.weight")
    ('net.0.weight', '0.weight')
    """
    return ".".join(part for part in name.split(".") if part != _COMPILED)


def named_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """``module``'s parameters by :func:`plain_name`, in ``named_parameters()`` order.

    >>> list(named_parameters(torch.compile(nn.Linear(2, 1), backend="eager")))
    ['weight', 'bias']
    """
    return {plain_name(n): p for n, p in module.named_parameters()}


def plain_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """``module.state_dict()`` with keys by :func:`plain_name` (the tensors are the module's own); a plain module's
    as it is (with the versions ``load_state_dict`` reads)."""
    state = module.state_dict()
    if all(plain_name(k) == k for k in state):
        return state
    return {plain_name(k): v for k, v in state.items()}


def load_plain_state_dict(module: nn.Module, state: Mapping[str, Tensor], *, strict: bool = True) -> None:
    """``module.load_state_dict(state)`` for a ``state`` keyed by plain names (or by the module's own): a state
    saved from a plain module loads into its compiled copy and the other way round."""
    own = {plain_name(k): k for k in module.state_dict()}
    if any(own.get(plain_name(k), k) != k for k in state):
        state = {own.get(plain_name(k), k): v for k, v in state.items()}
    module.load_state_dict(state, strict=strict)


def tensor_names(module: nn.Module) -> dict[str, str]:
    """The module's own name of each parameter and buffer, by plain name: the keys ``functional_call`` needs."""
    return {plain_name(n): n for n, _ in [*module.named_parameters(), *module.named_buffers()]}


def linear_like_weights(module: nn.Module, types: Sequence[str] = DEFAULT_TYPES) -> tuple[dict[int, str], list[str]]:
    """The prunable tensors of ``types`` modules as ``{id(parameter): where}`` and notes on weights left dense.

    A weight held through a parametrization that keeps zeros (``weight_norm``, ``spectral_norm``) is pruned through
    the stored tensor shaped like it; any other parametrization is left dense, with a note saying how to include it.
    """
    found: dict[int, str] = {}
    notes: list[str] = []
    for prefix, sub in module.named_modules():
        kinds = _type_names(sub)
        if not kinds & set(types):
            continue
        prefix = plain_name(prefix)
        where = f"{prefix}." if prefix else ""
        attributes = next((names for kind, names in _WEIGHT_NAMES.items() if kind in kinds), ("weight",))
        for attribute in attributes:
            param = sub._parameters.get(attribute)
            if isinstance(param, nn.Parameter):
                found[id(param)] = where + attribute
                continue
            parametrized = getattr(sub, "parametrizations", None)
            if parametrized is not None and attribute in parametrized:
                chain = parametrized[attribute]
                kinds_used = {type(p).__name__ for p in chain}
                weight = getattr(sub, attribute)
                stored = [(n, p) for n, p in chain.named_parameters() if p.shape == weight.shape]
                if kinds_used <= _SCALING_PARAMETRIZATIONS and len(stored) == 1:
                    found[id(stored[0][1])] = f"{where}parametrizations.{attribute}.{stored[0][0]}"
                else:
                    notes.append(f"{where}{attribute} is computed by the parametrization {sorted(kinds_used)}, whose"
                                 " zeros need not stay zero: it is left dense (include=r'...' names its stored"
                                 f" tensors {where}parametrizations.{attribute}.* if pruning them is what you want)")
                continue
            for stored in _HOOK_REPARAMETRIZED:
                if attribute == "weight" and isinstance(sub._parameters.get(stored), nn.Parameter):
                    found[id(sub._parameters[stored])] = where + stored
                    break
    return found, notes


def select_parameters(
    module: nn.Module,
    include: str | None = None,
    exclude: str | None = None,
    types: Sequence[str] = DEFAULT_TYPES,
) -> list[str]:
    """Names of the prunable parameters of ``module``, in ``named_parameters()`` order.

    By default the weights of every module whose class (or a base class) is named in ``types`` (see
    :data:`DEFAULT_TYPES`; a weight under ``weight_norm``/``spectral_norm`` through its stored tensor). A weight
    shared by several modules (a Linear head tied to an embedding) has one name, the first in
    ``named_parameters()``. ``include`` is a regex searched in parameter names that *replaces* the type rule (any
    parameter may be chosen); ``exclude`` is a regex that removes names from either rule. Names are plain
    (:func:`plain_name`): those of a module under ``torch.compile`` are the plain module's.

    >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    >>> select_parameters(net)
    ['0.weight', '2.weight']
    >>> select_parameters(net, exclude=r"^2\\.")
    ['0.weight']
    """
    chosen, _ = linear_like_weights(module, types)
    named = list(named_parameters(module).items())
    all_names = [name for name, _ in named]
    if include is not None:
        pattern = re.compile(include)
        names = [n for n in all_names if pattern.search(n)]
        if not names:
            raise ValueError(f"include={include!r} matches no parameter; parameters are: {_preview(all_names)}.")
    else:
        names = [n for n, p in named if id(p) in chosen]
    if exclude is not None:
        pattern = re.compile(exclude)
        if not any(pattern.search(n) for n in names):
            raise ValueError(f"exclude={exclude!r} matches no prunable parameter; they are: {_preview(names)}.")
        names = [n for n in names if not pattern.search(n)]
    if not names:
        raise ValueError(
            f"no prunable parameters in {type(module).__name__} (types={list(types)}, include={include!r},"
            f" exclude={exclude!r}); parameters are: {_preview(all_names)}."
        )
    return names


def selection_notes(module: nn.Module, names: Sequence[str], types: Sequence[str] = DEFAULT_TYPES) -> list[str]:
    """What a user should know about the prunable weights chosen: tied weights and Linear-like weights left dense.

    >>> emb = nn.Embedding(10, 4); head = nn.Linear(4, 10, bias=False); head.weight = emb.weight
    >>> selection_notes(nn.ModuleDict({"emb": emb, "head": head}), ["emb.weight"])
    ["head.weight is the same tensor as emb.weight (tied): it is pruned as 'emb.weight', in both places"]
    """
    chosen, notes = linear_like_weights(module, types)
    # A weight left dense by the type rule may still be pruned through its stored tensors (include=...).
    notes = [n for n in notes if not any(name.startswith(n.split(" tensors ")[-1].split("*")[0]) for name in names)]
    canonical = {id(p): n for n, p in named_parameters(module).items()}
    for ident, where in chosen.items():
        if canonical.get(ident) not in (where, None) and canonical[ident] in names:
            notes.append(f"{where} is the same tensor as {canonical[ident]} (tied): it is pruned as"
                         f" {canonical[ident]!r}, in both places")
    return notes


class Masks(Mapping[str, Tensor]):
    """An immutable mapping parameter name -> ``bool`` tensor (``True`` = kept).

    >>> m = Masks({"w": torch.tensor([True, False, True, True])})
    >>> m.density()
    0.75
    >>> Masks.unpack(m.pack()) == m
    True
    """

    def __init__(self, masks: Mapping[str, Tensor]) -> None:
        data: dict[str, Tensor] = {}
        for name, mask in masks.items():
            if not isinstance(name, str) or not isinstance(mask, Tensor):
                raise TypeError(f"masks map str -> Tensor; got {type(name).__name__} -> {type(mask).__name__}.")
            if mask.dtype != torch.bool:
                if not bool(((mask == 0) | (mask == 1)).all()):
                    raise ValueError(f"mask {name!r} holds values other than 0 and 1.")
                mask = mask != 0
            data[name] = mask.detach()
        if not data:
            raise ValueError("masks are empty: at least one parameter must be masked.")
        self._data = data

    @classmethod
    def dense(cls, module: nn.Module, names: Sequence[str]) -> Masks:
        """All-``True`` masks for ``names`` of ``module`` (on the parameters' devices)."""
        params = named_parameters(module)
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    def __getitem__(self, name: str) -> Tensor:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping) or list(self) != list(other):
            return False
        return all(self[n].shape == other[n].shape and bool((self[n].cpu() == other[n].cpu()).all()) for n in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Masks({len(self)} tensors, density={self.density():.4f})"

    def kept(self) -> int:
        return sum(int(m.sum()) for m in self._data.values())

    def numel(self) -> int:
        return sum(m.numel() for m in self._data.values())

    def density(self) -> float:
        """Fraction of the masked (prunable) weights that are kept."""
        return self.kept() / max(self.numel(), 1)

    def layer_densities(self) -> dict[str, float]:
        """Density of each masked parameter."""
        return {n: int(m.sum()) / m.numel() if m.numel() else 1.0 for n, m in self._data.items()}

    def dense_like(self) -> Masks:
        """All-kept masks over the same parameters and shapes."""
        return Masks({n: torch.ones_like(m) for n, m in self._data.items()})

    def to(self, device: torch.device | str) -> Masks:
        return Masks({n: m.to(device) for n, m in self._data.items()})

    def overlap(self, other: Mapping[str, Tensor]) -> float:
        """Intersection over union of the kept weights of two masks over the same parameters.

        >>> a = Masks({"w": torch.tensor([1, 1, 0, 0])}); b = Masks({"w": torch.tensor([1, 0, 1, 0])})
        >>> round(a.overlap(b), 4)
        0.3333
        """
        if list(self) != list(other):
            raise ValueError(f"masks cover different parameters: {_preview(list(self))} vs {_preview(list(other))}.")
        inter = sum(int((self[n] & other[n].to(self[n].device)).sum()) for n in self)
        union = sum(int((self[n] | other[n].to(self[n].device)).sum()) for n in self)
        return inter / union if union else 1.0

    def check(self, module: nn.Module) -> None:
        """Raise ``ValueError`` naming the first parameter that is missing from ``module`` or has another shape."""
        params = named_parameters(module)
        missing = [n for n in self if n not in params]
        if missing:
            raise ValueError(
                f"masks name parameters that {type(module).__name__} does not have: {_preview(missing)};"
                f" its parameters are: {_preview(list(params))}."
            )
        for name, mask in self.items():
            if tuple(mask.shape) != tuple(params[name].shape):
                raise ValueError(
                    f"mask {name!r} has shape {tuple(mask.shape)} but the parameter has shape"
                    f" {tuple(params[name].shape)}: the masks belong to a different architecture."
                )

    @torch.no_grad()
    def apply_(self, module: nn.Module) -> None:
        """Zero the pruned weights of ``module`` in place."""
        self.check(module)
        params = named_parameters(module)
        for name, mask in self.items():
            params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))

    def pack(self) -> dict[str, Any]:
        """Plain data with 1 bit per weight, names and shapes: what goes into checkpoints and ticket files."""
        return {
            "format": _FORMAT,
            "masks": {n: {"shape": list(m.shape), "bits": pack_bits(m)} for n, m in self.items()},
        }

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> Masks:
        """Inverse of :meth:`pack`; raises ``ValueError`` on data that is not packed masks."""
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not packed masks: expected format {_FORMAT!r}, found {found!r}.")
        return cls({n: unpack_bits(e["bits"], tuple(e["shape"])) for n, e in data["masks"].items()})


_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(mask: Tensor) -> Tensor:
    """Bit-pack a boolean tensor into ``uint8`` (8 weights a byte, big-endian within a byte), on CPU.

    >>> pack_bits(torch.tensor([True, False, True])).tolist()
    [160]
    """
    flat = mask.detach().reshape(-1).cpu().to(torch.uint8)
    flat = torch.nn.functional.pad(flat, (0, -flat.numel() % 8))
    return (flat.view(-1, 8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.uint8)


def unpack_bits(bits: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`pack_bits`."""
    numel = 1
    for size in shape:
        numel *= size
    if bits.dtype != torch.uint8 or bits.numel() != -(-numel // 8):
        raise ValueError(f"packed bits of dtype {bits.dtype} and size {bits.numel()} cannot hold shape {tuple(shape)}.")
    flat = (bits.view(-1, 1) & _BIT_WEIGHTS) != 0
    return flat.reshape(-1)[:numel].reshape(tuple(shape))


class MaskEnforcer:
    """Keeps pruned weights at exactly zero with one fused multiply per (device, dtype) group.

    Masks are stored in each parameter's dtype and device: a ``bool`` mask would cost a type promotion per step.

    >>> lin = nn.Linear(2, 2)
    >>> enforcer = MaskEnforcer(lin, Masks({"weight": torch.tensor([[True, False], [False, True]])}))
    >>> with torch.no_grad():
    ...     _ = lin.weight.fill_(3.0)
    >>> enforcer.enforce_()
    >>> lin.weight.tolist()
    [[3.0, 0.0], [0.0, 3.0]]
    """

    def __init__(self, module: nn.Module, masks: Masks) -> None:
        masks.check(module)
        params = named_parameters(module)
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
        for name, mask in masks.items():
            param = params[name]
            if bool(mask.all()):  # a fully dense tensor needs no work
                continue
            group = groups.setdefault((param.device, param.dtype), ([], []))
            group[0].append(param)
            group[1].append(mask.to(device=param.device, dtype=param.dtype))
        self._groups = list(groups.values())

    @torch.no_grad()
    def enforce_(self) -> None:
        """Zero the pruned weights."""
        for params, masks in self._groups:
            torch._foreach_mul_(params, masks)

    @torch.no_grad()
    def mask_grads_(self) -> None:
        """Zero the gradients of pruned weights, so that norms (gradient clipping) see the sparse network only."""
        for params, masks in self._groups:
            pairs = [(p.grad, m) for p, m in zip(params, masks) if p.grad is not None]
            if pairs:
                grads, grad_masks = zip(*pairs)
                torch._foreach_mul_(list(grads), list(grad_masks))
