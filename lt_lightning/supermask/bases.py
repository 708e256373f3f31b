r"""Pruning in another basis (Alabdulmohsin et al. 2021, "A generalized lottery ticket hypothesis").

A layer's weight is held as its coefficients in an orthonormal basis chosen by name; masks (IMP's, or a supermask's)
act on the coefficients, and the layer computes with the weight they stand for. Bases by name:

- ``identity``: the canonical basis, the weights themselves;
- ``dct``: the orthonormal DCT-II over each row of a 2-d weight (a Linear's row, one output's weights), and over each
  kernel of a convolution (every spatial dimension: a 2-d DCT of each 3x3 kernel). A 1x1 kernel is its own DCT.

:func:`express_in_basis` makes a module's weights coefficients (a parametrization: the coefficients are the parameters
the optimizer and IMP see, ``<layer>.parametrizations.weight.original``); :func:`export_weights` turns the module
back into plain weights. With IMP, name the coefficients as the prunable tensors:

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> before = net(torch.ones(1, 8))
>>> express_in_basis(net, "dct")
['0.parametrizations.weight.original', '2.parametrizations.weight.original']
>>> torch.allclose(net(torch.ones(1, 8)), before, atol=1e-6)   # same function, other parameters
True
>>> # IMPCallback(include=r"parametrizations\.weight\.original") prunes coefficients; then, after the fit:
>>> export_weights(net)
['0.weight', '2.weight']

Cost: the transform is a matrix product per forward (``in_features``\ :sup:`2` per output for a Linear row), more than
the layer itself for wide Linear layers; a DCT through the FFT would be ``n log n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lt_lightning.masks import DEFAULT_TYPES, select_parameters
from lt_lightning.registry import Registry

#: ``(tensor, inverse) -> tensor``: coefficients of a weight (``inverse=False``) or the weight of coefficients.
Basis = Callable[[Tensor, bool], Tensor]

BASES: Registry[Basis] = Registry("basis name")
register_basis = BASES.register


@register_basis("identity")
def identity(x: Tensor, inverse: bool) -> Tensor:
    return x


@register_basis("dct")
def dct(x: Tensor, inverse: bool) -> Tensor:
    """Orthonormal DCT-II along each row (2-d tensors) or each kernel (the dimensions after the second).

    >>> w = torch.randn(3, 2, 3, 3)
    >>> torch.allclose(dct(dct(w, False), True), w, atol=1e-6)
    True
    >>> dct(torch.ones(1, 4), False)  # a constant row is one coefficient
    tensor([[2., 0., 0., 0.]])
    """
    for dim in _transform_dims(x):
        matrix = _dct_matrix(x.shape[dim], x.device, x.dtype)
        # Rows of `matrix` are the basis vectors: coefficients c = D w, so c^T = w^T D^T; and w = D^T c.
        x = torch.movedim(torch.movedim(x, dim, -1) @ (matrix if inverse else matrix.T), -1, dim)
    return x


def _transform_dims(x: Tensor) -> Sequence[int]:
    return [1] if x.dim() == 2 else range(2, x.dim())


@lru_cache(maxsize=64)
def _dct_matrix(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    k = torch.arange(n, dtype=torch.float64, device="cpu").view(-1, 1)
    i = torch.arange(n, dtype=torch.float64, device="cpu").view(1, -1)
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(device=device, dtype=dtype)


class InBasis(nn.Module):
    """Parametrization: the stored tensor is the weight's coefficients in ``basis`` (supermask layers are ones too)."""

    def __init__(self, basis: str) -> None:
        super().__init__()
        BASES.check(basis)
        self.basis = basis

    def forward(self, coefficients: Tensor) -> Tensor:
        return BASES[self.basis](coefficients, True)

    def right_inverse(self, weight: Tensor) -> Tensor:
        return BASES[self.basis](weight, False)


def express_in_basis(module: nn.Module, basis: str = "dct", include: str | None = None, exclude: str | None = None,
                     types: Sequence[str] = DEFAULT_TYPES) -> list[str]:
    """Hold the prunable weights of ``module`` (:func:`~lt_lightning.masks.select_parameters`) as coefficients in
    ``basis``, in place; the module computes the same function. Returns the names of the coefficient tensors."""
    BASES.check(basis)
    names = []
    for name in select_parameters(module, include, exclude, types):
        owner, attribute = plain_parameter(module, name)
        parametrize.register_parametrization(owner, attribute, InBasis(basis))
        names.append(_coefficients_name(name))
    return names


def weights_in_a_basis(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """``(owner, attribute, weight name)`` of every weight of ``module`` held in a basis (supermask layers too)."""
    return [(owner, attribute, f"{prefix}.{attribute}" if prefix else attribute)
            for prefix, owner in module.named_modules()
            for attribute, chain in getattr(owner, "parametrizations", {}).items()
            if any(isinstance(p, InBasis) for p in chain)]


def export_weights(module: nn.Module) -> list[str]:
    """Replace every parametrization of lt-lightning (bases, supermasks) in ``module`` by the plain weight it
    computes, in place: a module like any other, which needs lt-lightning no more. Returns the weights' names."""
    found = weights_in_a_basis(module)
    for owner, attribute, _ in found:
        parametrize.remove_parametrizations(owner, attribute, leave_parametrized=True)
        getattr(owner, attribute).requires_grad_(True)
    return [name for _, _, name in found]


def plain_parameter(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module owning the parameter ``name`` and its attribute there; ``ValueError`` naming it unless it is a
    plain weight of 2 dimensions or more (a Linear or ConvNd weight), not already parametrized."""
    path, _, attribute = name.rpartition(".")
    owner = module.get_submodule(path) if path else module
    param = owner._parameters.get(attribute)
    if ".parametrizations." in f".{name}" or not isinstance(param, nn.Parameter):
        raise ValueError(f"{name!r} is computed by a parametrization (weight_norm, spectral_norm, ...), not a stored"
                         " weight: a supermask or basis replaces the weight itself. Leave it out with exclude=.")
    if param.dim() < 2:
        raise ValueError(f"{name!r} has shape {tuple(param.shape)}: a supermask or basis needs a weight of 2"
                         " dimensions or more (a Linear or ConvNd weight), not a bias or norm. Leave it out with"
                         " exclude=, or choose types= or include= that name weights.")
    return owner, attribute


def _coefficients_name(name: str) -> str:
    path, _, attribute = name.rpartition(".")
    return f"{path + '.' if path else ''}parametrizations.{attribute}.original"
