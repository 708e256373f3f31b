"""Supermask layers: frozen weights, a trained score per weight, and the top-``density`` subnetwork in every forward.

:meth:`SupermaskSpec.apply` turns the prunable layers of a module into supermask layers in place, with a
parametrization (``torch.nn.utils.parametrize``) on each weight; the module stays the user's own class and its
``forward`` is unchanged. Per layer, in its ``state_dict``:

- ``<layer>.parametrizations.weight.original``: the frozen weights (``requires_grad=False``; in ``basis`` their
  coefficients), drawn by ``weight_init`` from ``seed``;
- ``<layer>.parametrizations.weight.0.scores``: the scores, the only trainable parameters: an optimizer built
  from ``module.parameters()`` afterwards trains them and nothing else.

Every other parameter (biases, norms, embeddings, layers left out of the selection) is frozen too, as the papers
train nothing but scores; ``train``, a regex searched in parameter names, leaves the matching ones as they were.

Every forward keeps exactly the top ``density`` of ``|scores|`` of each layer (``allocation="layerwise"``) or of all
layers together (``"global"``), found by :class:`~lt_lightning.supermask.topk.TopK` and computed once per change of
the scores (validation forwards reuse it). The masks are not stored: they follow from the scores.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 2))
>>> spec = SupermaskSpec(density=0.3, weight_init="signed_constant", seed=0)
>>> spec.apply(net)
['0.weight', '2.weight']
>>> [round(d, 4) for d in subnetwork_masks(net).layer_densities().values()]
[0.3, 0.3]
>>> sorted(n for n, p in net.named_parameters() if p.requires_grad)
['0.parametrizations.weight.0.scores', '2.parametrizations.weight.0.scores']
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lt_lightning.masks import DEFAULT_TYPES, Masks, _preview, select_parameters
from lt_lightning.pruning.schedule import SCHEDULES
from lt_lightning.supermask.activations import binarize_activations
from lt_lightning.supermask.bases import BASES, InBasis, express_in_basis, plain_parameter
from lt_lightning.supermask.binary import read_ticket
from lt_lightning.supermask.methods import METHODS, biprop_alpha, masked_weight
from lt_lightning.supermask.topk import TopK
from lt_lightning.supermask.weights import WEIGHT_INITS, draw_scores, draw_weight
from lt_lightning.ticket import Ticket
from lt_lightning.validation import check_bool, check_density, check_regex, check_seed, check_selection

Allocation = Literal["layerwise", "global"]
_ALLOCATIONS = ("layerwise", "global")


class _Group:
    """Layers whose masks are selected together (one layer, or all of them): their masks, recomputed only when a
    score tensor or the density changed."""

    def __init__(self, density: float) -> None:
        self.members: list[Supermask] = []
        self.density = density
        self._top = TopK()
        self._key: tuple[Any, ...] = ()
        self._masks: list[Tensor] = []
        self._abs: list[Tensor] = []

    def kept(self) -> int:
        return kept_count(self.density, sum(m.scores.numel() for m in self.members))

    def mask(self, member: Supermask) -> Tensor:
        scores = [m.scores for m in self.members]
        # The version counter moves with every in-place change (optimizer steps, load_state_dict); inference mode
        # is in the key as inference tensors cannot be used by autograd outside it.
        key = (self.density, torch.is_inference_mode_enabled(), *((s._version, s.data_ptr(), s.device) for s in scores))
        if key != self._key:
            with torch.no_grad():
                masks = self._top.masks(self._magnitudes(scores), self.kept())
                self._masks = [m if m.dtype == s.dtype else m.to(s.dtype) for m, s in zip(masks, scores)]
            self._key = key
        return self._masks[self.members.index(member)]

    def _magnitudes(self, scores: list[Tensor]) -> list[Tensor]:
        """``|scores|`` in float32, in buffers kept between calls (fresh megabyte tensors cost page faults)."""
        if [(b.shape, b.device) for b in self._abs] != [(s.shape, s.device) for s in scores] or any(
                b.is_inference() and not torch.is_inference_mode_enabled() for b in self._abs):
            self._abs = [torch.empty(s.shape, dtype=torch.float32, device=s.device) for s in scores]
        for buffer, s in zip(self._abs, scores):
            if s.dtype == torch.float32:
                torch.abs(s, out=buffer)
            else:
                buffer.copy_(s).abs_()
        return self._abs


class Supermask(InBasis):
    """Parametrization of one layer's weight: ``method(frozen, top-k mask of |scores|)``, in ``basis``.

    The stored (frozen) tensor is the weight's coefficients in ``basis`` (the weight itself for ``identity``).
    """

    def __init__(self, scores: Tensor, method: str, basis: str, group: _Group) -> None:
        super().__init__(basis)
        self.scores = nn.Parameter(scores)
        self.method = method
        self.group = group
        self._scratch: Tensor | None = None
        group.members.append(self)

    def mask(self) -> Tensor:
        """The current float 0/1 mask over the frozen tensor."""
        return self.group.mask(self)

    def coefficients(self, frozen: Tensor) -> Tensor:
        """The masked (and, for biprop, binarized) frozen tensor, before the basis maps it to a weight."""
        scratch = self._scratch
        if scratch is None or scratch.shape != self.scores.shape or scratch.device != self.scores.device or (
                scratch.dtype != self.scores.dtype or scratch.is_inference()):
            scratch = self._scratch = torch.empty_like(self.scores, requires_grad=False)
        return masked_weight(self.scores, frozen, self.mask(), self.method, scratch)

    def forward(self, frozen: Tensor) -> Tensor:
        return super().forward(self.coefficients(frozen))


@dataclass(frozen=True)
class SupermaskSpec:
    """How to make supermask layers, validated when built (before any training).

    Args:
        density: fraction of each layer's weights kept (of all prunable weights with ``allocation="global"``),
            in (0, 1].
        method: ``"edge_popup"`` or ``"biprop"`` (:data:`~lt_lightning.supermask.methods.METHODS`).
        allocation: ``"layerwise"`` (the top ``density`` of each layer) or ``"global"`` (of all layers together).
        weight_init: ``"module"``, ``"kaiming_normal"`` or ``"signed_constant"``
            (:data:`~lt_lightning.supermask.weights.WEIGHT_INITS`).
        scale_fan: scale drawn weights by ``1 / sqrt(density)``; only with a ``weight_init`` that draws.
        basis: ``"identity"`` or ``"dct"`` (:data:`~lt_lightning.supermask.bases.BASES`): the masks select
            coefficients of the weights in this basis.
        include, exclude, types: which weights are supermasked (:func:`~lt_lightning.masks.select_parameters`).
        seed: seed of the drawn weights and of the initial scores.
        train: regex searched in the plain module's parameter names: the matching parameters other than the
            supermasked weights keep training (e.g. ``"LayerNorm|classifier"``); ``None``: only the scores train.
    """

    density: float = 0.5
    method: str = "edge_popup"
    allocation: Allocation = "layerwise"
    weight_init: str = "module"
    scale_fan: bool = False
    basis: str = "identity"
    include: str | None = None
    exclude: str | None = None
    types: Sequence[str] = DEFAULT_TYPES
    seed: int = 0
    train: str | None = None

    def __post_init__(self) -> None:
        check_density("density", self.density)
        METHODS.check(self.method)
        WEIGHT_INITS.check(self.weight_init)
        BASES.check(self.basis)
        if self.allocation not in _ALLOCATIONS:
            raise ValueError(f"allocation={self.allocation!r} is not allowed; allowed: {list(_ALLOCATIONS)}.")
        check_bool("scale_fan", self.scale_fan)
        if self.scale_fan and self.weight_init == "module":
            raise ValueError("scale_fan=True rescales the weights the supermask draws, but weight_init='module' keeps"
                             " the module's own: use weight_init='kaiming_normal' or 'signed_constant'.")
        check_selection(self.include, self.exclude, self.types)
        check_seed("seed", self.seed)
        if self.train is not None:
            check_regex("train", self.train)

    def metadata(self) -> dict[str, Any]:
        """The arguments as plain data (what a ticket records of how its weights were made)."""
        return {"kind": "supermask", "density": self.density, "method": self.method, "allocation": self.allocation,
                "weight_init": self.weight_init, "scale_fan": self.scale_fan, "basis": self.basis,
                "include": self.include, "exclude": self.exclude, "types": list(self.types), "seed": self.seed,
                "train": self.train}

    def apply(self, module: nn.Module) -> list[str]:
        """Make the selected layers of ``module`` supermask layers and freeze every other parameter that
        ``train`` does not match, in place; returns the supermasked weights' names."""
        if supermask_layers(module):
            raise ValueError(f"{type(module).__name__} already has supermask layers: apply a supermask once (a fresh"
                             " fit resumes from a checkpoint instead).")
        names = select_parameters(module, self.include, self.exclude, self.types)
        owners = [plain_parameter(module, name) for name in names]
        if self.include is None:
            _check_types_have_weights(module, self.types)
        frozen = self._others_to_freeze(module, names)
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        shared = _Group(self.density) if self.allocation == "global" else None
        for (owner, attribute) in owners:
            weight = getattr(owner, attribute)
            drawn = draw_weight(self.weight_init, weight.shape, self.density, self.scale_fan, generator)
            scores = draw_scores(weight.shape, generator).to(device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                if drawn is not None:
                    weight.copy_(drawn)
            group = shared if shared is not None else _Group(self.density)
            # unsafe: skip parametrize's trial forward, which would select masks before every layer has its scores.
            parametrize.register_parametrization(owner, attribute, Supermask(scores, self.method, self.basis, group),
                                                 unsafe=True)
            frozen.append(owner.parametrizations[attribute].original)
        for param in frozen:
            # A gradient left from before (a forward and backward outside the fit) would still let weight decay and
            # momentum move the parameter: optimizers skip only parameters whose grad is None.
            param.requires_grad_(False)
            param.grad = None
        return names

    def _others_to_freeze(self, module: nn.Module, names: list[str]) -> list[nn.Parameter]:
        """The parameters outside ``names`` that ``train`` does not match; ``ValueError`` if ``train`` matches a
        supermasked weight (frozen by definition) or nothing."""
        others = {n: p for n, p in module.named_parameters() if n not in names}
        if self.train is None:
            return list(others.values())
        pattern = re.compile(self.train)
        weights = [n for n in names if pattern.search(n)]
        if weights:
            raise ValueError(f"train={self.train!r} matches {_preview(weights)}, weights the supermask keeps frozen"
                             " (it trains their scores instead): name other parameters (biases, norms, a head left"
                             " out with exclude=), or leave those weights out of the supermask with exclude=.")
        if not any(pattern.search(n) for n in others):
            raise ValueError(f"train={self.train!r} matches no parameter of {type(module).__name__} outside the"
                             f" supermasked weights; they are: {_preview(list(others))}.")
        return [p for n, p in others.items() if not pattern.search(n)]


def supermask_layers(module: nn.Module) -> dict[str, Supermask]:
    """The supermask layers of ``module``: weight name (as in the plain module) -> its :class:`Supermask`."""
    found = {}
    for prefix, owner in module.named_modules():
        for attribute, chain in getattr(owner, "parametrizations", {}).items():
            for p in chain:
                if isinstance(p, Supermask):
                    found[f"{prefix}.{attribute}" if prefix else attribute] = p
    return found


def frozen_tensors(module: nn.Module) -> dict[str, Tensor]:
    """The frozen tensor (weights, or coefficients in the basis) of each supermask layer, by weight name."""
    frozen = {}
    for name in supermask_layers(module):
        path, _, attribute = name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        frozen[name] = owner.parametrizations[attribute].original
    return frozen


def set_density(module: nn.Module, density: float) -> None:
    """Keep ``density`` from the next forward on (the progressive schedule changes it between epochs)."""
    check_density("density", density)
    for layer in supermask_layers(module).values():
        layer.group.density = density


def subnetwork_masks(module: nn.Module) -> Masks:
    """The masks of the current subnetwork, by weight name (over coefficients when the basis is not the identity)."""
    with torch.no_grad():
        return Masks({name: layer.mask() != 0 for name, layer in supermask_layers(module).items()})


def layer_statistics(module: nn.Module) -> dict[str, dict[str, float]]:
    """Per supermask layer: ``density`` (kept fraction), ``score_mean``/``score_std``/``score_min``/``score_max``,
    and ``alpha`` for biprop layers."""
    frozen = frozen_tensors(module)
    stats = {}
    with torch.no_grad():
        for name, layer in supermask_layers(module).items():
            mask, scores = layer.mask(), layer.scores.detach().float()
            row = {"density": int(mask.sum()) / mask.numel(), "score_mean": float(scores.mean()),
                   "score_std": float(scores.std()) if scores.numel() > 1 else 0.0,
                   "score_min": float(scores.min()), "score_max": float(scores.max())}
            if layer.method == "biprop":
                row["alpha"] = float(biprop_alpha(frozen[name], mask))
            stats[name] = row
    return stats


def subnetwork_ticket(module: nn.Module, metadata: dict[str, Any] | None = None) -> Ticket:
    """The current subnetwork as a ticket that needs no scores: its masks and the weights it computes with.

    With the identity basis, the ticket's entries are the plain module's (``<layer>.weight``: the kept frozen
    weights, binarized by biprop; pruned ones zero) and :func:`~lt_lightning.ticket.apply_ticket` loads it into a
    fresh module. In another basis, they are the coefficients (``<layer>.parametrizations.weight.original``): load
    it with :func:`apply_supermask_ticket`, which expresses the module in the basis first.
    """
    layers = supermask_layers(module)
    frozen = frozen_tensors(module)
    if not layers:
        raise ValueError(f"{type(module).__name__} has no supermask layers: nothing to export.")
    state: dict[str, Tensor] = {}
    masks: dict[str, Tensor] = {}
    stored = {f"{_parametrized(name)}.original": name for name in layers}
    scores = {f"{_parametrized(name)}.0.scores" for name in layers}
    with torch.no_grad():
        for key, value in module.state_dict().items():  # in the module's order, scores left out
            if key in stored:
                name = stored[key]
                layer = layers[name]
                entry = name if layer.basis == "identity" else key
                state[entry] = layer.coefficients(frozen[name]).detach().to("cpu", copy=True)
                masks[entry] = layer.mask().cpu() != 0
            elif key not in scores:
                state[key] = value.detach().to("cpu", copy=True)
    return Ticket(Masks(masks), state, dict(metadata or {}))


def _parametrized(name: str) -> str:
    path, _, attribute = name.rpartition(".")
    return f"{path + '.' if path else ''}parametrizations.{attribute}"


def _check_types_have_weights(module: nn.Module, types: Sequence[str]) -> None:
    """``ValueError`` naming a class of ``types`` whose modules in ``module`` have no weight to mask."""
    wanted = set(types)
    for prefix, sub in module.named_modules():
        kinds = sorted({c.__name__ for c in type(sub).__mro__} & wanted)
        has_weight = any(isinstance(p, nn.Parameter) and "weight" in n for n, p in sub._parameters.items())
        if kinds and not has_weight and not hasattr(sub, "parametrizations"):
            raise ValueError(f"types={list(types)} names {kinds[0]}, but {prefix or type(sub).__name__!r} has no"
                             " weight to mask: supermasks replace weights; name layer types that have one (Linear,"
                             " Conv2d, ...).")


def kept_count(density: float, numel: int) -> int:
    """Weights kept of ``numel`` at ``density`` (per layer, or over all layers with a global allocation): the
    nearest count, at least one.

    >>> kept_count(0.3, 7), kept_count(0.01, 7)
    (2, 1)
    """
    return max(1, round(density * numel))


def progressive_density(density: float, epoch: int, epochs: int) -> float:
    """Biprop's progressive pruning against layer collapse: the density falls from 0.5 to ``density`` over the
    first ``epochs`` epochs as ``density + (0.5 - density) * (1 - epoch / epochs) ** 3`` (the ``"cubic"`` path of
    ``lt_lightning.pruning.SCHEDULES``), then stays (a density above 0.5 is kept from the start).

    >>> [round(progressive_density(0.1, e, 4), 4) for e in range(6)]
    [0.5, 0.2688, 0.15, 0.1063, 0.1, 0.1]
    """
    if epochs <= 0 or epoch >= epochs or density >= 0.5:
        return density
    return SCHEDULES["cubic"](epoch / epochs, 0.5, density)



def apply_supermask_ticket(path: str | os.PathLike, module: nn.Module) -> Ticket:
    """Load a supermask ticket (plain or binary) into a fresh ``module`` of the same architecture, in place, ready
    to evaluate: its activations binarized and its weights expressed in the basis, as the ticket's metadata says.

    ``ValueError`` naming the first entry that does not fit, before the module is changed.
    """
    ticket, _ = read_ticket(path)
    metadata = ticket.metadata
    basis = metadata.get("basis", "identity")
    BASES.check(basis)
    # Coefficients have their weight's shape: check the ticket against the plain module before changing it.
    plain = {_plain_key(k): v for k, v in ticket.state_dict.items()}
    Ticket(Masks({_plain_key(k): m for k, m in ticket.masks.items()}), plain).check(module)
    if metadata.get("binary_activations"):
        binarize_activations(module)
    if basis != "identity":
        express_in_basis(module, basis, include=metadata.get("include"), exclude=metadata.get("exclude"),
                         types=metadata.get("types", DEFAULT_TYPES))
    ticket.apply(module)
    return ticket


def _plain_key(key: str) -> str:
    return re.sub(r"(^|\.)parametrizations\.(\w+)\.original$", r"\1\2", key)
