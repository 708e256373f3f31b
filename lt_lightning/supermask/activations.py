"""Binary activations for MPT-1/1 (Diffenderfer & Kailkhura 2021): every activation module swapped for ``sign``.

:func:`binarize_activations` replaces, by type, each activation module of a network (:data:`ACTIVATION_TYPES`:
``ReLU``, ``GELU``, ``Tanh``, ...) with a :class:`BinaryActivation`: ``sign(x)`` forward, and backward the
piecewise-quadratic approximation of Bi-Real Net that biprop uses, ``2 - 2|x|`` inside ``[-1, 1]`` and 0 outside.

The limit: only modules can be swapped. An activation called as a function inside a ``forward``
(``F.relu(x)``, ``torch.tanh(x)``, ``x.relu()``) stays what it is. A network with no activation module at all is
refused at once; one that mixes both is caught by :class:`FunctionalActivationCheck` during the first forward, which
raises naming the call and where it is made.

>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1), nn.Tanh())
>>> binarize_activations(net)
['1', '3']
>>> net[1](torch.tensor([-0.5, 0.0, 2.0]))
tensor([-1.,  0.,  1.])
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

#: Activation module types that :func:`binarize_activations` swaps (class names, matched on the class and its bases).
ACTIVATION_TYPES: tuple[str, ...] = ("ReLU", "ReLU6", "LeakyReLU", "PReLU", "RReLU", "ELU", "SELU", "CELU", "GELU",
                                     "SiLU", "Mish", "Hardtanh", "Hardswish", "Softplus", "Tanh")

# The functions those modules call, as torch's function dispatch names them.
_FUNCTIONAL: Mapping[Callable[..., Any], str] = {
    fn: name for name, fn in (
        ("F.relu", F.relu), ("F.relu_", F.relu_), ("torch.relu", torch.relu), ("torch.relu_", torch.relu_),
        ("Tensor.relu", Tensor.relu), ("Tensor.relu_", Tensor.relu_), ("F.relu6", F.relu6),
        ("F.leaky_relu", F.leaky_relu), ("F.leaky_relu_", F.leaky_relu_), ("F.prelu", F.prelu), ("F.rrelu", F.rrelu),
        ("F.elu", F.elu), ("F.selu", F.selu), ("F.celu", F.celu), ("F.gelu", F.gelu), ("F.silu", F.silu),
        ("F.mish", F.mish), ("F.hardtanh", F.hardtanh), ("F.hardswish", F.hardswish), ("F.softplus", F.softplus),
        ("torch.tanh", torch.tanh), ("Tensor.tanh", Tensor.tanh), ("F.tanh", F.tanh),
    )
}


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * (2.0 - 2.0 * x.abs()).clamp_(min=0.0)


class BinaryActivation(nn.Module):
    """``sign(x)``, with Bi-Real Net's approximate gradient ``max(0, 2 - 2|x|)``.

    >>> x = torch.tensor([-2.0, -0.25, 0.5], requires_grad=True)
    >>> BinaryActivation()(x).sum().backward()
    >>> x.grad.tolist()
    [0.0, 1.5, 1.0]
    """

    def forward(self, x: Tensor) -> Tensor:
        return _ApproxSign.apply(x)


def activation_modules(module: nn.Module) -> list[str]:
    """Names of the activation modules of ``module`` (:data:`ACTIVATION_TYPES`)."""
    wanted = set(ACTIVATION_TYPES)
    return [name for name, sub in module.named_modules()
            if name and {c.__name__ for c in type(sub).__mro__} & wanted]


def binarize_activations(module: nn.Module) -> list[str]:
    """Swap every activation module of ``module`` for a :class:`BinaryActivation`, in place; returns their names.

    ``ValueError`` if there are none: the activations are then calls inside ``forward``, which cannot be swapped.
    """
    names = activation_modules(module)
    if not names:
        raise ValueError(
            f"binary_activations=True swaps activation modules ({', '.join(ACTIVATION_TYPES[:4])}, ...), but"
            f" {type(module).__name__} has none: its activations are function calls inside forward (F.relu(x),"
            " torch.tanh(x), x.relu()), which cannot be swapped. Use activation modules (nn.ReLU()) in the network,"
            " or binary_activations=False.")
    for name in names:
        path, _, attribute = name.rpartition(".")
        setattr(module.get_submodule(path) if path else module, attribute, BinaryActivation())
    return names


class FunctionalActivationCheck(TorchFunctionMode):
    """While active, an activation called as a function raises ``ValueError`` naming the call and where it is
    made: with binary activations it would stay full precision. Enter it around one forward."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func in _FUNCTIONAL:
            raise ValueError(
                f"binary_activations=True, but the network calls {_FUNCTIONAL[func]} as a function at {_caller()}:"
                " only activation modules are swapped for sign, so this activation would stay full precision."
                " Replace the call by an activation module (e.g. self.act = nn.ReLU() in __init__), or use"
                " binary_activations=False.")
        return func(*args, **(kwargs or {}))


def _caller() -> str:
    """``file:line (function)`` of the first frame outside torch and this module."""
    skip = (os.path.dirname(torch.__file__), __file__)
    for frame in inspect.stack()[2:]:
        if not frame.filename.startswith(skip):
            return f"{frame.filename}:{frame.lineno} ({frame.function})"
    return "an unknown place"
