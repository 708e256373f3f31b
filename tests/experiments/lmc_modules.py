"""Modules named by class path in the instability tests' configs."""

import lightning.pytorch as pl
from torch import nn

from lt_lightning.zoo import Classifier, DigitsDataModule


class NoValidation(Classifier):
    """A classifier without validation_step (Lightning's default, which does nothing)."""

    validation_step = pl.LightningModule.validation_step


class NoValData(DigitsDataModule):
    """Digits without a val loader."""

    val_dataloader = pl.LightningDataModule.val_dataloader


class BatchNormClassifier(Classifier):
    """The digits MLP with a BatchNorm layer after its first hidden layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model.hidden[0] = nn.Sequential(self.model.hidden[0], nn.BatchNorm1d(self.model.hidden[0].out_features))
