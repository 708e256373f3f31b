"""The frozen weights of a supermask and its initial scores, drawn from one seeded generator (the same on every rank).

Weight initializations by name (Ramanujan et al. 2020, section 4):

- ``module``: the module's own initialization, left as it is;
- ``kaiming_normal``: ``N(0, gain / sqrt(fan_in))`` with the ReLU gain ``sqrt(2)``;
- ``signed_constant``: ``+-gain / sqrt(fan_in)`` with a random sign (their best: "signed Kaiming constant").

With ``scale_fan`` the drawn weights are scaled by ``1 / sqrt(density)``: the fan-in of a layer that keeps a fraction
``density`` of its weights is ``density * fan_in`` (the paper's "scaled" variants). Scores start uniform in
``+-1 / sqrt(fan_in)``, the default initialization of a ``Linear`` weight, as edge-popup's.

Every draw is on CPU, in float32 (then cast): the same numbers whatever the device, precision or default dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lt_lightning.registry import Registry

#: ``(shape, std, generator) -> weights`` on CPU, float32; ``None``: keep the module's own.
WeightInit = Callable[[Sequence[int], float, torch.Generator], Tensor | None]

WEIGHT_INITS: Registry[WeightInit] = Registry("weight_init")
register_weight_init = WEIGHT_INITS.register

_RELU_GAIN = math.sqrt(2.0)


@register_weight_init("module")
def module_init(shape: Sequence[int], std: float, generator: torch.Generator) -> None:
    return None


@register_weight_init("kaiming_normal")
def kaiming_normal(shape: Sequence[int], std: float, generator: torch.Generator) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, device="cpu").mul_(std)


@register_weight_init("signed_constant")
def signed_constant(shape: Sequence[int], std: float, generator: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, tuple(shape), generator=generator, device="cpu").to(torch.float32)
    return signs.mul_(2.0).sub_(1.0).mul_(std)


def fan_in(shape: Sequence[int]) -> int:
    """Inputs per output: ``in_features`` of a Linear weight, ``in_channels / groups * kernel size`` of a conv's.

    >>> fan_in((16, 3, 5, 5))
    75
    """
    return int(shape[1]) * math.prod(int(s) for s in shape[2:])


def draw_weight(name: str, shape: Sequence[int], density: float, scale_fan: bool, generator: torch.Generator
                ) -> Tensor | None:
    """Weights of ``shape`` drawn by the initialization ``name`` (``None`` for ``module``).

    >>> g = torch.Generator().manual_seed(0)
    >>> sorted(set(draw_weight("signed_constant", (4, 8), 0.25, True, g).abs().tolist()[0]))  # sqrt(2 / (8 * 0.25))
    [1.0]
    """
    WEIGHT_INITS.check(name)
    std = _RELU_GAIN / math.sqrt(fan_in(shape) * (density if scale_fan else 1.0))
    return WEIGHT_INITS[name](shape, std, generator)


def draw_scores(shape: Sequence[int], generator: torch.Generator) -> Tensor:
    """Initial scores: uniform in ``+-1 / sqrt(fan_in)``, on CPU in float32."""
    bound = 1.0 / math.sqrt(fan_in(shape))
    return torch.rand(tuple(shape), generator=generator, device="cpu").mul_(2 * bound).sub_(bound)
