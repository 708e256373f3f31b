"""Pruning scores: how important each weight is (higher = more worth keeping). Chosen by name from a registry.

A score function takes a :class:`ScoreContext` and returns one tensor per masked parameter, shaped like it. Scores of
weights that are already pruned do not matter: allocation never revives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lt_lightning.masks import Masks


@dataclass
class ScoreContext:
    """What a score may look at: the module, its current masks and, for data-driven scores, batches and a loss.

    ``loss_fn(module, batch)`` returns a scalar loss; ``generator`` seeds random scores.
    """

    module: nn.Module
    masks: Masks
    batches: Iterable[Any] | None = None
    loss_fn: Callable[[nn.Module, Any], Tensor] | None = None
    generator: torch.Generator | None = None

    def parameters(self) -> dict[str, nn.Parameter]:
        """The masked parameters, by name."""
        params = dict(self.module.named_parameters())
        return {name: params[name] for name in self.masks}


ScoreFn = Callable[[ScoreContext], Mapping[str, Tensor]]

SCORES: dict[str, ScoreFn] = {}


def register_score(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Register ``fn(context) -> {name: scores}`` under ``name``; use as a decorator.

    >>> @register_score("abs_times_two")
    ... def _double(context):
    ...     return {n: 2 * p.detach().abs() for n, p in context.parameters().items()}
    >>> "abs_times_two" in SCORES
    True
    >>> del SCORES["abs_times_two"]
    """

    def decorator(fn: ScoreFn) -> ScoreFn:
        if name in SCORES:
            raise ValueError(f"a score named {name!r} is already registered.")
        SCORES[name] = fn
        return fn

    return decorator


def check_score(name: str) -> None:
    """Raise ``ValueError`` listing the known scores if ``name`` is not one of them."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; known scores: {sorted(SCORES)}.")


def compute_scores(name: str, context: ScoreContext) -> dict[str, Tensor]:
    """Run the score registered as ``name`` and check that it scored every masked parameter with the right shape."""
    check_score(name)
    scores = dict(SCORES[name](context))
    for param_name, mask in context.masks.items():
        if param_name not in scores or scores[param_name].shape != mask.shape:
            raise ValueError(f"score {name!r} returned no {tuple(mask.shape)} tensor for parameter {param_name!r}.")
    return scores


@register_score("magnitude")
def magnitude(context: ScoreContext) -> dict[str, Tensor]:
    """``|w|``: iterative magnitude pruning (Frankle & Carbin 2019).

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(torch.tensor([[-3.0, 1.0]]))
    >>> magnitude(ScoreContext(lin, Masks.dense(lin, ["weight"])))["weight"].tolist()
    [[3.0, 1.0]]
    """
    return {name: p.detach().abs() for name, p in context.parameters().items()}


@register_score("random")
def random(context: ScoreContext) -> dict[str, Tensor]:
    """Uniform random scores: random pruning, the baseline every criterion must beat."""
    return {
        name: torch.rand(p.shape, generator=context.generator).to(p.device)
        for name, p in context.parameters().items()
    }
