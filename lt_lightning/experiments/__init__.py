"""Experiments of several fits, each one a plain ``lt-lightning fit`` so that any launcher can spread them."""

from lt_lightning.experiments.branch import Branch, branch_config, plan_branches, run_branches
from lt_lightning.experiments.lmc import instability, rewind_search, validation_evaluator

__all__ = ["Branch", "branch_config", "instability", "plan_branches", "rewind_search", "run_branches",
           "validation_evaluator"]
