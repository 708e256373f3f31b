"""Pruning, pure torch: scores x allocation x schedule, each piece chosen by name from a registry."""

from lt_lightning.pruning.allocation import ALLOCATIONS, register_allocation
from lt_lightning.pruning.prune import check_density, prune
from lt_lightning.pruning.schedule import geometric, rounds_to_reach
from lt_lightning.pruning.scores import SCORES, ScoreContext, compute_scores, register_score

__all__ = [
    "ALLOCATIONS",
    "SCORES",
    "ScoreContext",
    "check_density",
    "compute_scores",
    "geometric",
    "prune",
    "register_allocation",
    "register_score",
    "rounds_to_reach",
]
