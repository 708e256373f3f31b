"""Paper models, offline datamodules and a YAML-configurable classifier."""

from lt_lightning.zoo.classifier import Classifier
from lt_lightning.zoo.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    FashionMNISTDataModule,
    MNIST1DDataModule,
    MNISTDataModule,
    read_cifar10_batch,
    read_idx,
)
from lt_lightning.zoo.models import (
    MLP,
    MODELS,
    VGG16,
    Conv2,
    Conv4,
    Conv6,
    LeNet300100,
    ResNet20,
    build_model,
)

__all__ = [
    "MLP",
    "MODELS",
    "VGG16",
    "CIFAR10DataModule",
    "Classifier",
    "Conv2",
    "Conv4",
    "Conv6",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "LeNet300100",
    "MNIST1DDataModule",
    "MNISTDataModule",
    "ResNet20",
    "build_model",
    "read_cifar10_batch",
    "read_idx",
]
