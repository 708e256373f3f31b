"""MaskingCallback: train a ticket, or one of its controls, sparsely: masks kept fixed through training, in
checkpoints and across ranks."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from typing_extensions import override

from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.controls import CONTROLS, NEEDS_INIT, init_file, make_control
from lt_lightning.masks import Masks, plain_state_dict
from lt_lightning.ticket import Ticket, load_ticket
from lt_lightning.validation import check_bool, check_regex, check_seed, check_selection


class MaskingCallback(BaseMaskingCallback):
    """Train the ticket at ``ticket``: its weights (or, with ``ticket_weights=False``, the module's own) with its
    masks kept for the whole fit; or, with ``control``, the control of that name drawn with ``seed``
    (:mod:`lt_lightning.controls`: ``reinit``, ``shuffle_masks``, ``shuffle_weights``, ``keep_signs``,
    ``random_ticket``, ``random_ticket_layerwise``, or any registered one).

    The ticket is loaded once the module is built (``on_fit_start``: layers made in ``setup()`` or
    ``configure_model()`` included); a resumed fit keeps the checkpoint's weights and masks instead. Controls that
    draw new weights take them from the module as it is given to the fit, i.e. from its own initializer: seed that
    (``seed_everything``) to draw another one. ``shuffle_masks`` takes the weights of the positions it newly keeps
    from the unpruned rewind point that IMPCallback writes beside its tickets (``metadata["rewind_point"]``).

    With ``rename`` or ``exclude`` the ticket goes into a module of another architecture
    (:meth:`~lt_lightning.ticket.Ticket.transfer`: names mapped by regex, a head of another shape left out and
    dense).

    The applied ticket's metadata (with ``control`` and ``control_seed``) is :attr:`ticket_metadata`; the loggers
    get the ticket, control and seed as hyperparameters.

    >>> MaskingCallback(ticket="tickets/round_05.pt", control="shufle_masks")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: control='shufle_masks' is not allowed; expected None or one of ['keep_signs', 'random_ticket', ...

    Args:
        ticket: path of a ticket file.
        ticket_weights: load the ticket's weights too (``False``: keep the module's own initialization and only
            apply the masks, i.e. the randomly re-initialised control, the same as ``control="reinit"``).
        control: train this control of the ticket instead of the ticket itself.
        seed: seed of the control's random choices (which positions, which permutation).
        rename: ``{regex: replacement}`` mapping the ticket's entry names to the module's.
        exclude: regex of the ticket's entries (original names) left out.
    """

    def __init__(self, ticket: str, ticket_weights: bool = True, control: str | None = None, seed: int = 0,
                 rename: dict[str, str] | None = None, exclude: str | None = None) -> None:
        super().__init__()
        if not isinstance(ticket, str) or not ticket:
            raise ValueError(f"ticket={ticket!r} is not allowed; expected the path of a ticket file.")
        check_bool("ticket_weights", ticket_weights)
        if control is not None and control not in CONTROLS:
            raise ValueError(f"control={control!r} is not allowed; expected None or one of {sorted(CONTROLS)}.")
        check_seed("seed", seed)
        if control is not None and not ticket_weights:
            raise ValueError(f"control={control!r} gives the weights to train; ticket_weights=False would throw them"
                             " away: leave ticket_weights=True (control='reinit' is the re-initialised control).")
        if control is None and seed != 0:
            raise ValueError(f"seed={seed!r} is the seed of a control, and control is None: name the control.")
        if rename is not None and (not isinstance(rename, dict) or
                                   not all(isinstance(v, str) for v in rename.values())):
            raise ValueError(f"rename={rename!r} is not allowed; expected {{regex: replacement}}.")
        for key in rename or {}:
            check_regex("rename key", key)
        check_selection(exclude=exclude)
        if control is not None and (rename is not None or exclude is not None):
            raise ValueError(f"control={control!r} draws from a ticket of the module's own architecture; it cannot be"
                             " combined with rename= or exclude=.")
        self.ticket = ticket
        self.ticket_weights = ticket_weights
        self.control = control
        self.seed = seed
        self.rename, self.exclude = rename, exclude
        self.ticket_metadata: dict[str, Any] = {}

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks is not None:  # resumed: the checkpoint's masks (and weights) go on
            return
        ticket = load_ticket(self.ticket)
        if self.control is not None:
            source = init_file(self.control, ticket, self.ticket)
            # The module as given to the fit: built (and seeded) by the user, not yet trained.
            init = load_ticket(source).state_dict if source is not None else plain_state_dict(pl_module)
            if source is None and self.control in NEEDS_INIT and _same_kept_weights(init, ticket):
                raise ValueError(
                    f"the module given to the fit holds the ticket's own weights at every kept position, so control"
                    f" {self.control!r} would train the ticket itself: give the fit a freshly initialised module"
                    " (a seed_everything other than the IMP run's, no pre-trained weights loaded)."
                )
            ticket = make_control(self.control, ticket, seed=self.seed, init=init)
            rank_zero_info(f"lt-lightning: training control {self.control!r} (seed {self.seed}) of {self.ticket}"
                           f" at density {ticket.masks.density():.4g}"
                           + (f", new positions' weights from {source}" if source is not None else ""))
        self.ticket_metadata = ticket.metadata
        if self.rename is not None or self.exclude is not None:
            self.masks = ticket.transfer(pl_module, rename=self.rename, exclude=self.exclude,
                                         weights=self.ticket_weights)
        else:
            self.masks = ticket.apply(pl_module, weights=self.ticket_weights)
        self._log_ticket(trainer)

    @rank_zero_only
    def _log_ticket(self, trainer: pl.Trainer) -> None:
        params = {"lt/ticket": self.ticket, "lt/control": self.control, "lt/control_seed": self.seed,
                  "lt/ticket_round": self.ticket_metadata.get("round"), "lt/density": self.masks.density()}
        for logger in trainer.loggers:
            logger.log_hyperparams(params)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks | None:
        return self.masks

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "ticket_metadata": self.ticket_metadata}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.ticket_metadata = dict(state_dict.get("ticket_metadata", {}))  # absent in lt-lightning 0.1 checkpoints


def _same_kept_weights(init: dict[str, torch.Tensor], ticket: Ticket) -> bool:
    return all(torch.equal(init[n].cpu()[m.cpu()], ticket.state_dict[n].cpu()[m.cpu()]) for n, m in ticket.masks.items())
