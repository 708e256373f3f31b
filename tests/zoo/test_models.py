import pytest
import torch
from torch import nn

from lt_lightning.zoo import MODELS, ResNet20, build_model

# (registry name, kwargs, input shape) -- every registry entry appears at least once.
CASES = [
    ("mlp", {"in_features": 40, "hidden": [16, 8], "num_classes": 10}, (2, 40)),
    ("mlp", {"in_features": 64, "hidden": [], "num_classes": 3}, (2, 64)),
    ("lenet_300_100", {}, (2, 1, 28, 28)),
    ("conv2", {}, (2, 3, 32, 32)),
    ("conv4", {}, (2, 3, 32, 32)),
    ("conv6", {}, (2, 3, 32, 32)),
    ("conv2", {"in_channels": 1, "image_size": 28}, (2, 1, 28, 28)),
    ("conv4", {"in_channels": 1, "image_size": 28}, (2, 1, 28, 28)),
    ("conv6", {"in_channels": 1, "image_size": 28}, (2, 1, 28, 28)),
    ("resnet20", {}, (2, 3, 32, 32)),
    ("resnet20", {"shortcut": "pad", "num_classes": 100}, (2, 3, 32, 32)),
    ("vgg16", {}, (2, 3, 32, 32)),
]


def test_cases_cover_registry():
    assert {name for name, _, _ in CASES} == set(MODELS)


@pytest.mark.parametrize(("name", "kwargs", "shape"), CASES)
def test_forward_shape_and_output_layer_name(name, kwargs, shape):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    logits = model(torch.randn(*shape))
    assert logits.shape == (shape[0], kwargs.get("num_classes", 10))
    assert torch.isfinite(logits).all()
    # The documented convention: the last layer is `out`, a Linear.
    assert isinstance(model.out, nn.Linear)
    assert [n for n, _ in model.named_parameters()][-2:] == ["out.weight", "out.bias"]


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("lenet_300_100", {}, 266_610),  # Frankle & Carbin: 266K
        ("conv2", {}, 4_301_642),  # Frankle & Carbin: 4.3M
        ("conv4", {}, 2_425_930),  # Frankle & Carbin: 2.4M
        ("resnet20", {"shortcut": "pad"}, 269_722),  # He et al.: 0.27M
    ],
)
def test_parameter_counts_match_papers(name, kwargs, expected):
    assert sum(p.numel() for p in build_model(name, **kwargs).parameters()) == expected


def test_resnet_shortcuts():
    conv, pad = ResNet20(shortcut="conv"), ResNet20(shortcut="pad")
    assert any("shortcut" in n for n, _ in conv.named_parameters())
    assert not any("shortcut" in n for n, _ in pad.named_parameters())


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown model 'conv9'; known: mlp, .*vgg16"):
        build_model("conv9")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("mlp", {}, r"missing a required argument: 'in_features'.*accepted: in_features, hidden"),
        ("vgg16", {"depth": 19}, r"bad arguments for model 'vgg16'.*depth"),
        ("mlp", {"in_features": 4, "hidden": [0], "num_classes": 2}, r"hidden sizes .* \[0\]"),
        ("conv6", {"image_size": 4}, r"image_size=4 is too small for Conv6"),
        ("conv2", {"num_classes": 0}, r"num_classes must be a positive integer, got 0"),
        ("resnet20", {"shortcut": "B"}, r"unknown shortcut 'B'; allowed: 'conv', 'pad'"),
    ],
)
def test_bad_arguments(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, **kwargs)
