"""Analysis of tickets, torch only: linear mode connectivity (interpolation, barriers, distances), verdicts
(matching, winning) over seeds, and mask similarity."""

from lt_lightning.analysis.lmc import (
    cosine_similarity,
    error_barrier,
    interpolate,
    l2_distance,
    loss_barrier,
    reestimate_batchnorm,
    support_overlap,
    to_error,
)
from lt_lightning.analysis.similarity import mask_similarity
from lt_lightning.analysis.verdicts import compare, lowest_matching_density, student_t_cdf, student_t_quantile

__all__ = [
    "compare",
    "cosine_similarity",
    "error_barrier",
    "interpolate",
    "l2_distance",
    "loss_barrier",
    "lowest_matching_density",
    "mask_similarity",
    "reestimate_batchnorm",
    "student_t_cdf",
    "student_t_quantile",
    "support_overlap",
    "to_error",
]
