"""Pieces chosen by name (scores, allocations, controls, ...): one small registry type for all of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class Registry(dict[str, F], Generic[F]):
    """Functions by name; ``kind`` names them in messages. A function may declare, when it is registered, what it
    needs from its caller (``needs``, out of the registry's ``capabilities``): callers read :meth:`needs` and refuse
    a function they cannot serve before any work starts, for built-in and user functions alike.

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
    >>> reg = Registry("score", capabilities=("batches",))
    >>> _ = reg.register("on_data", needs=["batches"])(double)
    >>> sorted(reg.needs("on_data"))
    ['batches']
    """

    def __init__(self, kind: str, capabilities: Sequence[str] = ()) -> None:
        super().__init__()
        self.kind = kind
        self.capabilities = tuple(capabilities)
        self._needs: dict[str, frozenset[str]] = {}

    def register(self, name: str, needs: Iterable[str] = ()) -> Callable[[F], F]:
        """Register a function under ``name``, needing ``needs`` (some of :attr:`capabilities`); use as a decorator.
        A name is registered once."""
        wanted = frozenset([needs] if isinstance(needs, str) else needs)
        unknown = sorted(wanted - set(self.capabilities))
        if unknown:
            raise ValueError(f"needs={sorted(wanted)!r} is not allowed for a {self.kind}; a {self.kind} may need"
                             f" {list(self.capabilities)}.")

        def decorator(fn: F) -> F:
            if name in self:
                raise ValueError(f"a {self.kind} named {name!r} is already registered.")
            self[name] = fn
            self._needs[name] = wanted
            return fn

        return decorator

    def needs(self, name: str) -> frozenset[str]:
        """What the function registered as ``name`` needs from its caller (``ValueError`` for an unknown name)."""
        self.check(name)
        return self._needs.get(name, frozenset())

    def check(self, name: object) -> None:
        """Raise ``ValueError`` listing the known names if ``name`` is not one of them."""
        if not isinstance(name, str) or name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; known {self.kind}s: {sorted(self)}.")
