"""EarlyBirdCallback: draw the ticket early in dense training, as soon as its masks settle (You et al. 2020)."""

from __future__ import annotations

import math
import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lt_lightning.callbacks._trainer import callbacks_of, log_metrics, run_dir, steps_per_epoch
from lt_lightning.callbacks.base import BaseMaskingCallback, on_rank_zero
from lt_lightning.dynamic import MaskSettling
from lt_lightning.layout import TICKETS_DIR
from lt_lightning.masks import DEFAULT_TYPES, Masks, plain_state_dict
from lt_lightning.pruning import ScoreContext
from lt_lightning.pruning.spec import PruningSpec
from lt_lightning.state import to_cpu
from lt_lightning.ticket import Ticket
from lt_lightning.validation import check_bool, check_fraction, check_int, check_step

#: Beside IMP's tickets: the early-bird ticket.
TICKET_FILE = "early_bird.pt"


class EarlyBirdCallback(Callback):
    """Early-bird tickets (You et al. 2020): every ``every`` of dense training, the magnitude masks at ``density``
    are compared with the previous check's. Once their normalized Hamming distance (the fraction of positions that
    flipped) has stayed below ``distance`` for ``window`` consecutive checks, the masks have settled and the ticket
    is drawn: those masks on the initial weights (kept on CPU from step 0), saved to
    ``<dirpath or log dir>/tickets/early_bird.pt``; with ``stop=True`` the training stops there.

    Next to :class:`~lt_lightning.IMPCallback`, the stop ends IMP's dense round 0 there (as any stop request ends a
    round), so IMP trains its pruned rounds from an early round 0. It only observes: it sets no masks, and it stops
    looking once a masking callback's masks prune the network (IMP's later rounds), since the rule is about dense
    training.

    >>> EarlyBirdCallback(density=0.1, window=0)
    Traceback (most recent call last):
    ValueError: window=0 is not allowed; expected an int >= 1 (consecutive checks below distance).

    Args:
        density: density of the ticket, in (0, 1).
        distance: the normalized Hamming distance below which consecutive masks count as the same, in (0, 1).
        window: consecutive checks whose distance must stay below ``distance``.
        every: optimizer steps between checks, an ``int`` or ``"500it"``, ``"1ep"`` (default: every epoch).
        stop: stop training (end IMP's round 0) when the ticket is drawn.
        allocation: how the ticket's masks spread the kept weights over layers (``lt_lightning.pruning.ALLOCATIONS``;
            ``"global"`` magnitude, as IMP).
        include, exclude, types: which parameters are prunable (see :func:`lt_lightning.masks.select_parameters`).
        dirpath: folder of ``tickets/early_bird.pt``; default: the trainer's log dir.

    Attributes:
        ticket: the drawn :class:`~lt_lightning.Ticket` (``None`` until the masks settle); ``drawn_step`` is where.
        distances: the distance at each check after the first.
    """

    def __init__(
        self,
        density: float,
        distance: float = 0.1,
        window: int = 5,
        every: int | str = "1ep",
        stop: bool = True,
        allocation: str = "global",
        include: str | None = None,
        exclude: str | None = None,
        types: list[str] | tuple[str, ...] = DEFAULT_TYPES,
        dirpath: str | None = None,
    ) -> None:
        check_fraction("density", density)
        check_fraction("distance", distance)
        check_int("window", window, minimum=1, why="consecutive checks below distance")
        self.every = check_step("every", every, nonzero=True)
        check_bool("stop", stop)
        if dirpath is not None and (not isinstance(dirpath, str) or os.path.isfile(dirpath)):
            raise ValueError(f"dirpath={dirpath!r} is not allowed; expected a folder for tickets/.")
        self.spec = PruningSpec(score="magnitude", allocation=allocation, include=include, exclude=exclude,
                                types=types)
        self.density = density
        self.distance = distance
        self.window = window
        self.stop = stop
        self.dirpath = dirpath
        self._fresh()

    def _fresh(self) -> None:
        self.ticket: Ticket | None = None
        self.drawn_step: int | None = None
        self._settling = MaskSettling(self.distance, self.window)
        self._initial: dict[str, torch.Tensor] | None = None
        self._observing = True
        self._names: list[str] = []
        self._run_dir = ""
        self._every = 0
        self._step_at_batch_start = -1

    @property
    def distances(self) -> list[float]:
        return self._settling.distances

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._fresh()  # a resumed fit gets its state from the checkpoint, which Lightning loads next
            self._run_dir = run_dir(trainer, self.dirpath)

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._names, _ = self.spec.resolve(pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        per_epoch = steps_per_epoch(trainer)
        if self.every.epochs and per_epoch == math.inf:
            raise ValueError(f"every={str(self.every)!r} counts epochs, but the train loader has no length; use 'Nit'.")
        self._every = self.every.to_steps(int(per_epoch) if self.every.epochs else 1)
        total = trainer.estimated_stepping_batches  # infinite while another callback still sets the fit's length
        if total != math.inf and total // self._every < self.window + 1:
            raise ValueError(f"every={str(self.every)!r} ({self._every} steps) checks the masks {int(total // self._every)}"
                             f" times in this fit of {int(total)} steps, but window={self.window} needs"
                             f" {self.window + 1} checks to draw a ticket: allowed every <= {int(total) // (self.window + 1)}"
                             " steps, or a smaller window.")
        if self._initial is None:
            if trainer.global_step > 0:
                raise ValueError(f"EarlyBirdCallback draws its ticket on the weights of step 0, but this fit resumes at"
                                 f" step {trainer.global_step} from a checkpoint without them (it was written without"
                                 " an EarlyBirdCallback): start the fit from step 0.")
            self._initial = to_cpu(plain_state_dict(pl_module))

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if (self.ticket is None and self._observing and step != self._step_at_batch_start
                and step % self._every == 0):
            self._check(trainer, pl_module, step)

    def _check(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        masking = [c for c in callbacks_of(trainer) if isinstance(c, BaseMaskingCallback) and c.masks is not None
                   and c.masks.kept() < c.masks.numel()]
        if masking:
            self._observing = False
            rank_zero_info(f"lt-lightning: EarlyBirdCallback stops looking at step {step}: {type(masking[0]).__name__}"
                           " prunes the network, and early-bird tickets are drawn in dense training.")
            return
        observed = on_rank_zero(trainer, "EarlyBirdCallback", lambda: self._observe(pl_module))
        distance, packed = trainer.strategy.broadcast(observed, src=0)
        if distance is not None:
            log_metrics(trainer, {"early_bird/distance": distance})
        if packed is None:
            return
        assert self._initial is not None
        self.drawn_step = step
        metadata = {"method": "early_bird", "step": step, "epoch": trainer.current_epoch, "density": self.density,
                    "distance": self.distance, "window": self.window, "every_steps": self._every,
                    "distances": trainer.strategy.broadcast(list(self.distances), src=0)}
        self.ticket = Ticket.from_state(self._initial, Masks.unpack(packed), metadata)
        path = os.path.join(self._run_dir, TICKETS_DIR, TICKET_FILE)
        if trainer.is_global_zero:
            self.ticket.save(path)
        log_metrics(trainer, {"early_bird/drawn_step": float(step)})
        rank_zero_info(f"lt-lightning: the masks at density {self.density} settled at step {step} (distance below"
                       f" {self.distance} for {self.window} checks): early-bird ticket saved to {path}"
                       + ("; training stops here." if self.stop else "."))
        if self.stop:
            trainer.should_stop = True

    def _observe(self, pl_module: pl.LightningModule) -> tuple[float | None, dict[str, Any] | None]:
        """Rank zero: the distance to the previous check's masks, and the packed masks once they have settled."""
        masks = self.spec.prune(ScoreContext(pl_module, Masks.dense(pl_module, self._names)), self.density)
        distance = self._settling.observe(masks)
        return distance, masks.pack() if self._settling.settled else None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.ticket is None:
            recent = ", ".join(f"{d:.4f}" for d in self.distances[-self.window:]) or "none yet"
            rank_zero_info(f"lt-lightning: the masks at density {self.density} did not settle (last distances:"
                           f" {recent}; threshold {self.distance}, window {self.window}): no early-bird ticket.")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"settling": self._settling.state_dict(), "initial": self._initial, "drawn_step": self.drawn_step,
                "ticket": (self.ticket.masks.pack(), self.ticket.metadata) if self.ticket is not None else None,
                "observing": self._observing}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._settling.load_state_dict(state_dict["settling"])
        self._initial = state_dict["initial"]
        self.drawn_step = state_dict["drawn_step"]
        self._observing = state_dict["observing"]
        drawn = state_dict["ticket"]
        self.ticket = (Ticket.from_state(self._initial, Masks.unpack(drawn[0]), drawn[1])
                       if drawn is not None and self._initial is not None else None)
