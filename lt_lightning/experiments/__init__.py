"""Experiments of several fits, each one a plain ``lt-lightning fit`` so that any launcher can spread them."""

from lt_lightning.experiments.branch import Branch, branch_config, plan_branches, run_branches

__all__ = ["Branch", "branch_config", "plan_branches", "run_branches"]
