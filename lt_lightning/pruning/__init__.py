"""Pruning, pure torch: scores x allocation x schedule, each piece chosen by name from a registry (``SCORES``,
``ALLOCATIONS``, ``SCHEDULES``)."""

from lt_lightning.pruning.allocation import ALLOCATIONS, erk_densities, register_allocation, smart_ratio_densities
from lt_lightning.pruning.prune import (
    LayerCollapseWarning,
    check_density,
    check_regex,
    match_parameters,
    prune,
    prune_iteratively,
)
from lt_lightning.pruning.schedule import (
    SCHEDULES,
    geometric,
    one_shot,
    polynomial,
    register_schedule,
    rounds_to_reach,
    synflow_exponential,
)
from lt_lightning.pruning.scores import SCORES, ScoreContext, compute_scores, register_score

__all__ = [
    "ALLOCATIONS",
    "SCHEDULES",
    "SCORES",
    "LayerCollapseWarning",
    "ScoreContext",
    "check_density",
    "check_regex",
    "compute_scores",
    "erk_densities",
    "geometric",
    "match_parameters",
    "one_shot",
    "polynomial",
    "prune",
    "prune_iteratively",
    "register_allocation",
    "register_schedule",
    "register_score",
    "rounds_to_reach",
    "smart_ratio_densities",
    "synflow_exponential",
]
