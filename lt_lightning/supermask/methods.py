"""What a supermask makes of a frozen weight and its mask, by name, with the straight-through gradient to the scores.

- ``edge_popup`` (Ramanujan et al. 2020): the kept weights as they are, ``weight * mask``.
- ``biprop`` (Diffenderfer & Kailkhura 2021, multi-prize tickets): the kept weights binarized to ``alpha * sign(w)``,
  one ``alpha`` per layer, the mean ``|w|`` over its kept weights (the l1-optimal scale of Rastegari et al.).

Both send the same gradient to the scores, as the papers' code does: the gradient of the loss with respect to the
mask, taken as if the mask were continuous and multiplied ``w`` (biprop's ``alpha * sign(w)`` times ``|w|``), is passed
straight through the top-k, then through ``|scores|`` (the layer keeps the largest ``|scores|``).

A new method is one function ``(weight, mask) -> effective weight`` under :func:`register_method`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lt_lightning.registry import Registry

Method = Callable[[Tensor, Tensor], Tensor]

#: Supermask methods by name: ``(frozen weight, float 0/1 mask) -> the weight the layer computes with``.
METHODS: Registry[Method] = Registry("supermask method")
register_method = METHODS.register


@register_method("edge_popup")
def edge_popup(weight: Tensor, mask: Tensor) -> Tensor:
    """The kept weights, unchanged.

    >>> edge_popup(torch.tensor([0.5, -2.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])).tolist()
    [0.5, -2.0, 0.0]
    """
    return weight * mask


@register_method("biprop")
def biprop(weight: Tensor, mask: Tensor) -> Tensor:
    """The kept weights binarized to ``alpha * sign(w)``; ``alpha`` is the mean ``|w|`` of the kept weights.

    >>> biprop(torch.tensor([0.5, -2.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])).tolist()
    [1.25, -1.25, 0.0]
    """
    signs = weight.sign().mul_(mask)
    return signs.mul_(biprop_alpha(weight, mask, signs))


def biprop_alpha(weight: Tensor, mask: Tensor, signs: Tensor | None = None) -> Tensor:
    """Mean ``|w|`` over the kept weights (0 when none is kept), as a 0-dim tensor: no host synchronisation.
    ``signs``, ``sign(weight) * mask`` if the caller has it, saves a pass: ``|w|`` on the kept weights is
    ``signs * w``."""
    signs = weight.sign().mul_(mask) if signs is None else signs
    return torch.dot(signs.view(-1), weight.view(-1)) / mask.sum().clamp(min=1)


class _StraightThrough(torch.autograd.Function):
    """``method(weight, mask)`` forward; ``grad * weight * sign(scores)`` to the scores backward."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, weight: Tensor, mask: Tensor, method: Method, scratch: Tensor | None
                ) -> Tensor:
        ctx.save_for_backward(scores, weight)
        ctx.scratch = scratch
        return method(weight, mask)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        scores, weight = ctx.saved_tensors
        signs = torch.sign(scores) if ctx.scratch is None else torch.sign(scores, out=ctx.scratch)
        return torch.mul(grad, weight).mul_(signs), None, None, None, None


def masked_weight(scores: Tensor, weight: Tensor, mask: Tensor, method: str, scratch: Tensor | None = None
                  ) -> Tensor:
    """The weight a supermask layer computes with, differentiable with respect to ``scores`` only. ``scratch``,
    a tensor shaped like ``scores`` that the caller keeps between steps, holds ``sign(scores)`` in the backward
    pass (a fresh megabyte-sized tensor per step costs page faults on CPU).

    >>> scores = torch.tensor([0.3, -0.9, 0.1], requires_grad=True)
    >>> w = masked_weight(scores, torch.tensor([0.5, -2.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]), "edge_popup")
    >>> w.sum().backward()
    >>> scores.grad.tolist()   # every score gets a gradient, kept or not: grad * weight * sign(score)
    [0.5, 2.0, 1.0]
    """
    return _StraightThrough.apply(scores, weight, mask, METHODS[method], scratch)
