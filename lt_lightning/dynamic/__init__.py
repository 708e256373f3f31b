"""Masks that change during training, pure torch: dynamic sparse training (RigL, SET), gradual magnitude pruning and
early-bird tickets. Each piece is small and chosen by name; the Lightning callbacks decide when they run."""

from lt_lightning.dynamic.distribution import DISTRIBUTIONS, check_distribution, check_erk_fits, erk_max_density
from lt_lightning.dynamic.early_bird import MaskSettling, hamming_distance
from lt_lightning.dynamic.optim import check_resettable, start_at_zero_
from lt_lightning.dynamic.schedule import cosine_drop_fraction, gmp_density, is_gmp_event, is_update_step
from lt_lightning.dynamic.update import NEEDS_GRADIENTS, UPDATERS, drop_and_grow, mask_changes, register_updater

__all__ = [
    "DISTRIBUTIONS",
    "NEEDS_GRADIENTS",
    "UPDATERS",
    "MaskSettling",
    "check_distribution",
    "check_erk_fits",
    "check_resettable",
    "cosine_drop_fraction",
    "drop_and_grow",
    "erk_max_density",
    "gmp_density",
    "hamming_distance",
    "is_gmp_event",
    "is_update_step",
    "mask_changes",
    "register_updater",
    "start_at_zero_",
]
