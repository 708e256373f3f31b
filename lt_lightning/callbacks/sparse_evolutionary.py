"""SETCallback: Sparse Evolutionary Training (Mocanu et al. 2018), RigL with random growth."""

from __future__ import annotations

from lt_lightning.callbacks.rigl import RigLCallback


class SETCallback(RigLCallback):
    """SET (Mocanu et al. 2018): :class:`RigLCallback` with random growth instead of gradient-based growth, the same
    arguments (``seed`` also seeds the growth, one draw per update step) and no gradient read.

    Static sparse training, the baseline of both, is :class:`~lt_lightning.PruneAtInitCallback` with
    ``method="random", allocation="erk", density=...``: the same initial masks, kept fixed.
    """

    updater = "set"
    prefix = "set"
