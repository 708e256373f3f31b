"""How an experiment is shown: logger scalars, W&B extras, plots and the report."""

from lt_lightning.reporting.scalars import round_scalars

__all__ = ["round_scalars"]
