"""Pieces chosen by name (scores, allocations, controls, ...): one small registry type for all of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(dict[str, F], Generic[F]):
    """Functions by name; ``kind`` names them in messages.

    >>> reg = Registry("score")
    >>> @reg.register("double")
    ... def double(x):
    ...     return 2 * x
    >>> reg["double"](3)
    6
    >>> reg.check("triple")
    Traceback (most recent call last):
    ...
    ValueError: unknown score 'triple'; known scores: ['double'].
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        """Register a function under ``name``; use as a decorator. A name is registered once."""

        def decorator(fn: F) -> F:
            if name in self:
                raise ValueError(f"a {self.kind} named {name!r} is already registered.")
            self[name] = fn
            return fn

        return decorator

    def check(self, name: object) -> None:
        """Raise ``ValueError`` listing the known names if ``name`` is not one of them."""
        if not isinstance(name, str) or name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {sorted(self)}.")
