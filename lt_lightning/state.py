"""Training-state snapshots kept on CPU: model weights and buffers, optimizer and LR-scheduler states, counters.

A snapshot is plain data (dicts, lists, numbers, CPU tensors), so it can live in a Lightning checkpoint as is.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from lt_lightning.files import atomic_torch_save
from lt_lightning.masks import load_plain_state_dict, named_parameters, plain_state_dict
from lt_lightning.step import Step, StepLike

#: State files hold a Snapshot. Like Lightning checkpoints they are read with ``weights_only=False`` (scheduler states
#: may hold any picklable value): load only files you trust.
SNAPSHOT_FORMAT = "lt-lightning-snapshot/1"


def to_cpu(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor cloned to CPU (GPU memory is for training).

    >>> t = torch.ones(2)
    >>> c = to_cpu({"a": [t]}); _ = c["a"][0].add_(1); t.tolist()
    [1.0, 1.0]
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        # A shallow copy keeps the mapping's type and its extras (a defaultdict's factory); items are then set one by
        # one: type(obj)(pairs) would count the pairs as elements of a Counter (MultiStepLR's milestones).
        out = copy.copy(obj)
        for k, v in obj.items():
            out[k] = to_cpu(v)
        if hasattr(obj, "_metadata"):  # module state_dicts carry version metadata used when loading
            out._metadata = copy.deepcopy(obj._metadata)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class Snapshot:
    """The state of a training run at one optimizer step.

    ``model`` is a ``state_dict`` (buffers included), ``optimizers`` and ``schedulers`` hold one ``state_dict`` each
    in the trainer's order; ``step`` counts optimizer steps taken, ``epoch`` is the epoch being run.
    """

    step: int
    epoch: int
    model: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]] = field(default_factory=list)
    schedulers: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def capture(
        cls,
        model: nn.Module,
        optimizers: Sequence[torch.optim.Optimizer] = (),
        schedulers: Sequence[Any] = (),
        *,
        step: int = 0,
        epoch: int = 0,
    ) -> Snapshot:
        """Copy the current state to CPU."""
        return cls(
            step=step,
            epoch=epoch,
            model=to_cpu(plain_state_dict(model)),
            optimizers=[to_cpu(o.state_dict()) for o in optimizers],
            schedulers=[to_cpu(s.state_dict()) for s in schedulers],
        )

    def restore_model(self, model: nn.Module) -> None:
        """Load the weights and buffers into ``model`` in place (the tensors keep their devices)."""
        load_plain_state_dict(model, self.model)

    def restore_optimizers(self, optimizers: Sequence[torch.optim.Optimizer], *, keep_buffers: bool = False) -> None:
        """Load optimizer states. ``keep_buffers`` keeps per-parameter state (momentum, Adam moments, step) and
        takes only hyper-parameters (learning rates, ...) from the snapshot."""
        self._check_count("optimizers", len(self.optimizers), len(optimizers))
        for optimizer, saved in zip(optimizers, self.optimizers):
            state = copy.deepcopy(saved)
            if keep_buffers:
                state["state"] = optimizer.state_dict()["state"]
            optimizer.load_state_dict(state)

    def restore_schedulers(self, schedulers: Sequence[Any]) -> None:
        """Load LR-scheduler states (the optimizers' learning rates come from :meth:`restore_optimizers`)."""
        self._check_count("schedulers", len(self.schedulers), len(schedulers))
        for scheduler, saved in zip(schedulers, self.schedulers):
            scheduler.load_state_dict(copy.deepcopy(saved))

    def state_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every tensor, and rebuilds a Counter (MultiStepLR's milestones) from
        # its (key, count) pairs, counting the pairs. The snapshot is plain data already.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        return cls(**data)

    @staticmethod
    def _check_count(what: str, saved: int, current: int) -> None:
        if saved != current:
            raise ValueError(f"the snapshot holds {saved} {what} but training has {current}: cannot restore it.")


def relative_distance(module: nn.Module, start: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> float | None:
    """``|w - w0| / |w0|`` over the masked parameters of ``module`` (kept weights only) against ``start``;
    ``None`` when ``|w0|`` is 0.

    >>> lin = nn.Linear(2, 1, bias=False)
    >>> start = {"weight": torch.tensor([[3.0, 4.0]])}
    >>> _ = lin.weight.data.copy_(torch.tensor([[3.0, 4.5]]))
    >>> relative_distance(lin, start, {"weight": torch.tensor([[True, True]])})
    0.1
    """
    params = named_parameters(module)
    diff = norm = 0.0
    for name, mask in masks.items():
        param = params[name].detach()
        w0 = start[name].to(param.device) * mask.to(param.device)
        diff += float((param - w0).float().pow(2).sum())
        norm += float(w0.float().pow(2).sum())
    return (diff / norm) ** 0.5 if norm else None


def save_snapshot(snapshot: Snapshot, path: str | os.PathLike) -> None:
    """Write ``snapshot`` to ``path`` atomically (parent folders are created)."""
    atomic_torch_save({"format": SNAPSHOT_FORMAT, **snapshot.state_dict()}, path)


def load_snapshot(path: str | os.PathLike) -> Snapshot:
    """Read a file written by :func:`save_snapshot`; ``ValueError`` naming the file if it is not one."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"state file {path!r} does not exist.")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{path!r} is not an lt-lightning state file (format {SNAPSHOT_FORMAT!r}).")
    return Snapshot.from_state_dict({k: v for k, v in data.items() if k != "format"})


def snapshot_file(dirpath: str | os.PathLike, step: StepLike) -> str:
    """Where :class:`SnapshotCallback` writes the state at ``step``: ``dirpath/step_<step>.pt``, the step spelled as
    in the config (``500it``, ``2ep``), so that the name is known before the fit resolves epochs to steps.

    >>> snapshot_file("start", 500), snapshot_file("start", "2ep")
    ('start/step_500it.pt', 'start/step_2ep.pt')
    """
    return os.path.join(os.fspath(dirpath), f"step_{Step.parse(step)}.pt")
