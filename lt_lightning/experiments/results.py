"""Typed results of the multi-fit analyses, written as JSON and read back by ``lt-lightning report``.

Each is a dataclass that also reads like a mapping (``result["barrier"]``), as :class:`~lt_lightning.records.
RoundRecord` does, so that the reports, the loggers and the JSON file share one shape. Optional fields that are
``None`` (a search row without tickets) are left out of the mapping and the JSON.

>>> row = SearchRow(step=0, barrier=0.1, stable=False, copy_errors=[0.3, 0.31], out="o")
>>> "matches" in row, SearchRow.from_dict(row.to_dict()) == row
(False, True)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lt_lightning.layout import INSTABILITY_FILE, SEARCH_FILE


class _Result(Mapping[str, Any]):
    _OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def _keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)  # type: ignore[arg-type]
                if not (f.name in self._OPTIONAL and getattr(self, f.name) is None)]

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(self[k]) for k in self}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "result") -> Any:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{where} has unknown keys {unknown}; {cls.__name__} has {sorted(names)}.")
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"{where} is not a {cls.__name__} ({err}).") from err


def _plain(value: Any) -> Any:
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(eq=True)
class InstabilityResult(_Result):
    """One instability analysis: the barrier of ``key`` between two copies trained from step ``step``."""

    step: int | None
    train_steps: int
    seeds: list[int]
    key: str
    threshold: float
    barrier: float
    stable: bool
    loss_barrier: float | None
    endpoints: list[dict[str, float]]
    l2_distance: float
    cosine_similarity: float
    density: float
    start: str
    ticket: str | None
    points: int
    curve: list[dict[str, float]]
    bn_batches: int = 0
    out: str = ""
    analysis: str = "instability"


@dataclass(eq=True)
class SearchRow(_Result):
    """One rewind step of a search: its instability and, with IMP tickets, whether the ticket matches dense."""

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("ticket_round", "ticket_density", "ticket_error", "dense_error",
                                            "matches", "imp_run")
    step: int
    barrier: float
    stable: bool
    copy_errors: list[float]
    out: str
    ticket_round: int | None = None
    ticket_density: float | None = None
    ticket_error: float | None = None
    dense_error: float | None = None
    matches: bool | None = None
    imp_run: str | None = None


@dataclass(eq=True)
class SearchResult(_Result):
    """A rewind-point search: one row per step, the earliest stable and matching steps."""

    key: str
    threshold: float
    eps: float
    density: float | None
    seeds: list[int]
    points: int
    rows: list[SearchRow]
    earliest_stable: int | None
    earliest_matching: int | None
    out: str = ""
    analysis: str = "rewind_search"

    def __post_init__(self) -> None:
        self.rows = [r if isinstance(r, SearchRow) else SearchRow.from_dict(r, "a search row") for r in self.rows]


def write_analysis(path: str | os.PathLike, result: _Result) -> None:
    from lt_lightning.files import atomic_write_text

    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, allow_nan=True) + "\n")


def read_analysis(folder: str | os.PathLike) -> InstabilityResult | SearchResult | None:
    """The result an analysis left in ``folder`` (``rewind_search.json`` or ``instability.json``), or ``None``;
    ``ValueError`` naming a file that is not one."""
    for name, cls in ((SEARCH_FILE, SearchResult), (INSTABILITY_FILE, InstabilityResult)):
        path = os.path.join(os.fspath(folder), name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"{path!r} is not readable JSON ({err}).") from err
            return cls.from_dict(data, repr(path))
    return None
