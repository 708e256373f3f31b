"""What one round of an experiment records, and the one place it is written and read.

A :class:`RoundRecord` is typed, plain data (JSON as is) and reads like a mapping (``record["final"]``), so the history
file, the report, W&B and the CLI share it. :class:`MetricTracker` keeps a round's final and best values of what the
module logs, each metric with an explicit direction.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lt_lightning.files import atomic_write_text
from lt_lightning.layout import BRANCHES_DIR, HISTORY_FILE, RESULT_FILE, branch_dir  # noqa: F401  # importers' names

Mode = Literal["min", "max"]


@dataclass(eq=True)
class RoundRecord(Mapping[str, Any]):
    """One round: its masks' densities, its metrics, where it started and stopped, and what it left on disk.

    Steps are steps of one training (``start_step`` is 0 for round 0 and the rewind step after); ``stopped_step``
    is where the round ended (the training's length, or earlier when a callback stopped it).

    >>> r = RoundRecord(round=1, density=0.8, final={"val_acc": 0.9})
    >>> r["density"], RoundRecord.from_dict(r.to_dict()) == r
    (0.8, True)
    """

    round: int
    density: float
    layer_density: dict[str, float] = field(default_factory=dict)
    start_step: int = 0
    train_steps: int = 0
    stopped_step: int | None = None
    stopped_early: bool = False
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    monitor: str | None = None
    mode: Mode = "min"
    best_step: int | None = None
    mask_overlap: float | None = None
    distance_from_rewind: float | None = None
    wall_time_s: float = 0.0
    ticket: str | None = None
    trained_ticket: str | None = None
    basin: dict[str, float] | None = None

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "round record") -> RoundRecord:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming ``where`` and the keys it lacks or does not know."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} is {type(data).__name__}, not a mapping of round fields.")
        missing = [k for k in ("round", "density") if k not in data]
        unknown = sorted(set(data) - set(_FIELDS))
        if missing or unknown:
            raise ValueError(f"{where} lacks {missing} or has unknown keys {unknown}; round records have {_FIELDS}.")
        return cls(**data)


_FIELDS = tuple(f.name for f in dataclasses.fields(RoundRecord))


_HISTORY_FORMAT = "lt-lightning-history/1"


def write_history(path: str | os.PathLike, history: Sequence[RoundRecord], run: str | None = None) -> None:
    """Write the rounds as JSON, atomically (a reader never sees a half-written file), with the id of the ``run``
    that owns the file, so that another run does not write over it."""
    payload = {"format": _HISTORY_FORMAT, "run": run, "rounds": [r.to_dict() for r in history]}
    atomic_write_text(path, json.dumps(payload, indent=2))


def _load(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is not readable JSON ({err}).") from err


def read_history(path: str | os.PathLike) -> list[RoundRecord]:
    """Read a history written by :func:`write_history` (or lt-lightning 0.1's plain list); ``ValueError`` naming the
    file and the bad record.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.json")
    >>> write_history(path, [RoundRecord(round=0, density=1.0)], run="abc")
    >>> read_history(path)[0].density, history_run(path)
    (1.0, 'abc')
    """
    path = os.fspath(path)
    data = _load(path)
    rounds = data.get("rounds") if isinstance(data, dict) and data.get("format") == _HISTORY_FORMAT else data
    if not isinstance(rounds, list) or not rounds:
        raise ValueError(f"{path!r} holds no rounds: expected a non-empty list of round records.")
    return [RoundRecord.from_dict(r, f"{path!r}: round record {i}") for i, r in enumerate(rounds)]


def load_history(run_dir: str | os.PathLike) -> list[RoundRecord]:
    """Read the ``imp_history.json`` that :class:`~lt_lightning.IMPCallback` writes in a run's log dir.

    Raises ``FileNotFoundError`` (listing the histories found below ``run_dir``, if any) or ``ValueError`` naming
    the file and what it lacks.
    """
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, HISTORY_FILE)
    if not os.path.isfile(path):
        if not os.path.isdir(run_dir):
            raise FileNotFoundError(f"{run_dir!r} is not a directory; expected a run's log dir holding {HISTORY_FILE}.")
        found = sorted(os.path.relpath(os.path.join(d, HISTORY_FILE), run_dir)
                       for d, _, files in os.walk(run_dir) if HISTORY_FILE in files)
        hint = f"; found it below: {found[:5]}, pass that folder" if found else ""
        raise FileNotFoundError(f"no IMP history in {run_dir!r}: expected {path!r}, written by IMPCallback{hint}.")
    return read_history(path)


def history_run(path: str | os.PathLike) -> str | None:
    """The id of the run that wrote the history at ``path`` (``None`` for files of lt-lightning 0.1)."""
    data = _load(os.fspath(path))
    return data.get("run") if isinstance(data, dict) else None


_RESULT_FORMAT = "lt-lightning-result/1"


def write_result(path: str | os.PathLike, record: RoundRecord, metadata: Mapping[str, Any] | None = None) -> None:
    """Write the record of one training (a ticket's, a control's: one round that is a fit of its own) as JSON,
    atomically, with ``metadata`` (plain data: the control, its seed, the ticket it trained, ...)."""
    payload = {"format": _RESULT_FORMAT, "record": record.to_dict(), "metadata": dict(metadata or {})}
    atomic_write_text(path, json.dumps(payload, indent=2))


def read_result(path: str | os.PathLike) -> tuple[RoundRecord, dict[str, Any]]:
    """The record and metadata written by :func:`write_result`; ``ValueError`` naming the file if it is not one.

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), RESULT_FILE)
    >>> write_result(path, RoundRecord(round=2, density=0.25, final={"val_acc": 0.9}), {"control": "reinit"})
    >>> record, metadata = read_result(path)
    >>> record.final, metadata
    ({'val_acc': 0.9}, {'control': 'reinit'})
    """
    path = os.fspath(path)
    data = _load(path)
    if not isinstance(data, dict) or data.get("format") != _RESULT_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path!r} is not a training result: expected format {_RESULT_FORMAT!r}, found {found!r}.")
    return RoundRecord.from_dict(data["record"], f"{path!r}: record"), dict(data["metadata"])


def default_mode(name: str) -> Mode:
    """The documented default direction of a metric: names with 'loss' or 'err' are minimised, others maximised.

    >>> default_mode("val_loss"), default_mode("val/err@1"), default_mode("val_acc")
    ('min', 'min', 'max')
    """
    return "min" if re.search(r"loss|err", name, re.IGNORECASE) else "max"


class MetricTracker:
    """A round's latest (final) and best value of every scalar metric, each with a direction.

    The direction of ``monitor`` is ``mode``; ``modes`` gives others explicitly; the rest follow
    :func:`default_mode`. ``best`` includes the final values, so it is never worse than ``final``.

    >>> t = MetricTracker(monitor="val_acc", mode="max")
    >>> t.observe({"val_acc": 0.7, "val_loss": 0.9}, step=10); t.observe({"val_acc": 0.6, "val_loss": 0.8}, step=20)
    >>> t.final, t.best, t.best_step
    ({'val_acc': 0.6, 'val_loss': 0.8}, {'val_acc': 0.7, 'val_loss': 0.8}, 10)
    """

    def __init__(self, monitor: str | None = None, mode: Mode = "min", modes: Mapping[str, Mode] | None = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r} is not allowed; expected 'min' or 'max'.")
        if not isinstance(modes, (Mapping, type(None))):
            raise ValueError(f"modes={modes!r} is not allowed; expected {{metric name: 'min' or 'max'}}.")
        for name, direction in (modes or {}).items():
            if direction not in ("min", "max"):
                raise ValueError(f"modes[{name!r}]={direction!r} is not allowed; expected 'min' or 'max'.")
        self.monitor = monitor
        self.modes = {**(modes or {}), **({monitor: mode} if monitor else {})}
        self.final: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.best_step: int | None = None

    def mode(self, name: str) -> Mode:
        return self.modes.get(name) or default_mode(name)

    def observe(self, metrics: Mapping[str, float], step: int) -> None:
        """Take the values logged so far in this round, measured at ``step`` of one training (NaN is ignored)."""
        for name, value in metrics.items():
            value = float(value)
            if math.isnan(value):
                continue
            self.final[name] = value
            previous = self.best.get(name)
            if previous is None or (value < previous if self.mode(name) == "min" else value > previous):
                self.best[name] = value
                if name == self.monitor:
                    self.best_step = step

    def reset(self) -> None:
        """Forget everything: a new round starts."""
        self.final, self.best, self.best_step = {}, {}, None

    def state_dict(self) -> dict[str, Any]:
        return {"final": dict(self.final), "best": dict(self.best), "best_step": self.best_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.final, self.best, self.best_step = dict(state["final"]), dict(state["best"]), state["best_step"]
