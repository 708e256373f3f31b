"""Grown weights start at zero, and so does their optimizer state (Evci et al. 2020): momentum, Adam's moments and
any other per-weight state tensor shaped like the parameter. Optimizers whose state is not one value per weight, or
whose fresh state is not zero, are refused by name before training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = ["check_resettable", "start_at_zero_"]

# torch.optim classes whose state of a grown weight cannot be "zero, as if fresh", and why.
_REFUSED = {
    "LBFGS": "its state is a history of updates flattened over all parameters, not a value per weight",
    "Rprop": "its per-weight step sizes start at the learning rate, not at zero",
    "Adafactor": "its second moments are factored into row and column statistics, not a value per weight",
}
_WORKS = "SGD, Adam, AdamW, Adamax, NAdam, RAdam, RMSprop, Adadelta, ASGD, Adagrad with initial_accumulator_value=0"


def check_resettable(optimizer: torch.optim.Optimizer, who: str) -> None:
    """Raise ``ValueError`` naming the optimizer if the state of grown weights cannot start at zero in it.

    >>> check_resettable(torch.optim.LBFGS([torch.zeros(2, requires_grad=True)]), "RigLCallback")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: RigLCallback starts grown weights with zero optimizer state, which LBFGS cannot do: its state is a ...
    """
    name = type(optimizer).__name__
    why = next((_REFUSED[c.__name__] for c in type(optimizer).__mro__ if c.__name__ in _REFUSED), None)
    accumulators = {g.get("initial_accumulator_value", 0) for g in optimizer.param_groups} - {0}
    if why is None and accumulators:
        why = f"its sums start at initial_accumulator_value={sorted(accumulators)[0]}, not at zero"
    if why is not None:
        raise ValueError(f"{who} starts grown weights with zero optimizer state, which {name} cannot do: {why}. Use"
                         f" an optimizer with one state tensor per weight: {_WORKS}.")


@torch.no_grad()
def start_at_zero_(params: Mapping[str, Tensor], grown: Mapping[str, Tensor],
                   optimizers: Iterable[torch.optim.Optimizer] = ()) -> None:
    """Zero the weights at the ``grown`` positions of each named parameter, and there every state tensor of the
    ``optimizers`` shaped like it (scalar state, such as Adam's step count, is left alone). ``ValueError`` naming the
    optimizer and state entry for a state tensor of another shape: it is not one value per weight.

    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = torch.optim.SGD([w], lr=0.5, momentum=0.9)
    >>> w.grad = torch.ones(3); opt.step()
    >>> start_at_zero_({"w": w}, {"w": torch.tensor([False, True, False])}, [opt])
    >>> w.tolist(), opt.state[w]["momentum_buffer"].tolist()
    ([0.5, 0.0, 0.5], [1.0, 0.0, 1.0])
    """
    optimizers = list(optimizers)
    for name, where in grown.items():
        param = params[name]
        where = where.to(param.device)
        param.masked_fill_(where, 0)
        for optimizer in optimizers:
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, Tensor) or value.dim() == 0:
                    continue
                if value.shape != param.shape:
                    raise ValueError(f"{type(optimizer).__name__} keeps state {key!r} of shape {tuple(value.shape)} for"
                                     f" {name!r} of shape {tuple(param.shape)}: not one value per weight, so the state"
                                     f" of grown weights cannot start at zero. Use one of: {_WORKS}.")
                value.masked_fill_(where.to(value.device), 0)
