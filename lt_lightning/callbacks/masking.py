"""MaskingCallback: train a ticket sparsely, its masks kept fixed through training, in checkpoints and across ranks."""

from __future__ import annotations

import lightning.pytorch as pl
from typing_extensions import override

from lt_lightning.callbacks.base import BaseMaskingCallback
from lt_lightning.masks import Masks
from lt_lightning.ticket import load_ticket


class MaskingCallback(BaseMaskingCallback):
    """Train the ticket at ``ticket``: its weights (or, with ``ticket_weights=False``, the module's own) with its
    masks kept for the whole fit.

    The ticket is loaded once the module is built (``on_fit_start``: layers made in ``setup()`` or
    ``configure_model()`` included); a resumed fit keeps the checkpoint's weights and masks instead.

    Args:
        ticket: path of a ticket file.
        ticket_weights: load the ticket's weights too (``False``: keep the module's own initialization and only
            apply the masks, i.e. the randomly re-initialised control).
    """

    def __init__(self, ticket: str, ticket_weights: bool = True) -> None:
        super().__init__()
        if not isinstance(ticket, str) or not ticket:
            raise ValueError(f"ticket={ticket!r} is not allowed; expected the path of a ticket file.")
        if not isinstance(ticket_weights, bool):
            raise ValueError(f"ticket_weights={ticket_weights!r} is not allowed; expected a bool.")
        self.ticket = ticket
        self.ticket_weights = ticket_weights

    @override
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.masks is None:  # not resumed: the ticket gives weights and masks
            self.masks = load_ticket(self.ticket).apply(pl_module, weights=self.ticket_weights)

    @override
    def initial_masks(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Masks | None:
        return self.masks
