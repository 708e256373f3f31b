"""Modules named by class path in the instability tests' configs."""

import lightning.pytorch as pl

from lt_lightning.zoo import Classifier, DigitsDataModule


class NoValidation(Classifier):
    """A classifier without validation_step (Lightning's default, which does nothing)."""

    validation_step = pl.LightningModule.validation_step


class NoValData(DigitsDataModule):
    """Digits without a val loader."""

    val_dataloader = pl.LightningDataModule.val_dataloader
