"""Networks from the lottery-ticket papers, as plain ``nn.Module``s.

Parameter names follow one convention so per-layer pruning rules can be
written as regexes over ``named_parameters()``:

* the final linear layer is ``out`` in every model (``r"out\\.weight"``);
  Frankle & Carbin (2019) prune it at a lower rate than the rest;
* convolutions of the plain conv nets and VGG live in ``features``, hidden
  linear layers in ``hidden`` (MLP) or ``fc`` (Conv-2/4/6).

>>> m = build_model("conv2", in_channels=1, image_size=28)
>>> m(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
>>> [n for n, _ in m.named_parameters() if n.startswith("out")]
['out.weight', 'out.bias']
"""

import inspect
from collections.abc import Callable, Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import nn


def _init(module: nn.Module, scheme: Literal["glorot", "kaiming"]) -> None:
    # The papers fix the initialisation: Gaussian Glorot for LeNet/Conv-N
    # (Frankle & Carbin 2019), Kaiming normal for ResNet/VGG (OpenLTH).
    init = nn.init.xavier_normal_ if scheme == "glorot" else nn.init.kaiming_normal_
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class MLP(nn.Module):
    """Fully connected ReLU network; inputs are flattened, so images work too.

    >>> MLP(40, [100, 100], 10)(torch.zeros(3, 40)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        _check_positive(in_features=in_features, num_classes=num_classes)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be positive integers, got {list(hidden)!r}")
        sizes = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        _init(self, "glorot")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


class LeNet300100(MLP):
    """LeNet-300-100 of Frankle & Carbin (2019): MLP 784-300-100-10."""

    def __init__(self, in_features: int = 784, num_classes: int = 10) -> None:
        super().__init__(in_features, [300, 100], num_classes)


class _ConvNet(nn.Module):
    """Frankle & Carbin's Conv-N: pairs of 3x3 convs + max-pool, then FC 256-256."""

    widths: tuple[int, ...] = ()

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, image_size=image_size, num_classes=num_classes)
        if image_size < 2 ** len(self.widths):
            raise ValueError(
                f"image_size={image_size} is too small for {type(self).__name__}: "
                f"{len(self.widths)} 2x2 poolings need at least {2 ** len(self.widths)}"
            )
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for width in self.widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = width, size // 2
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Linear(channels * size * size, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU()
        )
        self.out = nn.Linear(256, num_classes)
        _init(self, "glorot")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc(self.features(x).flatten(1)))


class Conv2(_ConvNet):
    """Conv-2: 64-64-pool, FC 256-256-out."""

    widths = (64,)


class Conv4(_ConvNet):
    """Conv-4: 64-64-pool-128-128-pool, FC 256-256-out."""

    widths = (64, 128)


class Conv6(_ConvNet):
    """Conv-6: 64-64-pool-128-128-pool-256-256-pool, FC 256-256-out."""

    widths = (64, 128, 256)


class _PadShortcut(nn.Module):
    """He et al.'s option A: subsample and zero-pad channels (no parameters)."""

    def __init__(self, f_in: int, f_out: int) -> None:
        super().__init__()
        self.pad = ((f_out - f_in) // 2, f_out - f_in - (f_out - f_in) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, *self.pad))


class _Block(nn.Module):
    def __init__(self, f_in: int, f_out: int, shortcut: Literal["conv", "pad"]) -> None:
        super().__init__()
        stride = 2 if f_out != f_in else 1
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        self.shortcut: nn.Module = nn.Identity()
        if f_in != f_out and shortcut == "pad":
            self.shortcut = _PadShortcut(f_in, f_out)
        elif f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=2, bias=False), nn.BatchNorm2d(f_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016): 3 stages x 3 blocks of widths w, 2w, 4w.

    ``shortcut="conv"`` uses 1x1 conv + BN on downsampling blocks (as OpenLTH,
    used by Frankle et al.'s rewinding papers); ``"pad"`` is He et al.'s
    parameter-free option A.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 16,
        shortcut: Literal["conv", "pad"] = "conv",
    ) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
        if shortcut not in ("conv", "pad"):
            raise ValueError(f"unknown shortcut {shortcut!r}; allowed: 'conv', 'pad'")
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        plan = [width] * 3 + [2 * width] * 3 + [4 * width] * 3
        self.blocks = nn.Sequential(
            *(_Block(a, b, shortcut) for a, b in zip([width, *plan], plan))
        )
        self.out = nn.Linear(4 * width, num_classes)
        _init(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.out(x.mean(dim=(2, 3)))


class VGG16(nn.Module):
    """CIFAR VGG-16 with BN (as in OpenLTH): 13 conv layers, global pool, one FC."""

    plan = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, num_classes=num_classes)
        layers: list[nn.Module] = []
        channels = in_channels
        for spec in self.plan:
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                width = cast(int, spec)  # the plan holds widths and "M"
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(512, num_classes)
        _init(self, "kaiming")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global average pooling equals OpenLTH's AvgPool2d(2) on 32x32 inputs
        # (2x2 maps left) and still works for 28x28 ones.
        return self.out(self.features(x).mean(dim=(2, 3)))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "lenet_300_100": LeNet300100,
    "conv2": Conv2,
    "conv4": Conv4,
    "conv6": Conv6,
    "resnet20": ResNet20,
    "vgg16": VGG16,
}


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name; bad names or arguments raise ValueError.

    >>> build_model("mlp", in_features=4, hidden=[8], num_classes=3).out
    Linear(in_features=8, out_features=3, bias=True)
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    factory = MODELS[name]
    signature = inspect.signature(factory)
    try:
        # Checked before the call so a TypeError from inside the model is not masked.
        signature.bind(**kwargs)
    except TypeError as err:
        raise ValueError(
            f"bad arguments for model {name!r}: {err}; accepted: {', '.join(signature.parameters)}"
        ) from None
    return factory(**kwargs)
