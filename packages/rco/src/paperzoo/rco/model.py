"""Teachers and students as plain ``torch.nn`` modules (no Lightning), built from named presets.

Every preset follows the timm convention ``forward_features(x)`` / ``forward_head(features)``
with ``num_features``, which the hint loss (FitNets) uses by default to tap the penultimate
feature. RCO itself needs none of it: any ``nn.Module`` mapping inputs to logits can be a teacher
or a student (see :func:`paperzoo.rco.losses.model_output` for named layers and callables).

- ``mlp_tiny``, ``mlp_teacher`` (64-256-256-10, dropout 0.2), ``mlp_student`` (64-12-10):
  the validation experiment's models (spec section 4).
- ``cnn_tiny``: a two-convolution CNN with BatchNorm for 8x8 digits and for tests.
- ``mobilenetv2_t6_w05``: the paper's CIFAR-100 student, MobileNetV2 with expansion T = 6 and
  width W = 0.5, CIFAR variant (paper section 4.1).
- ``resnet18``, ``resnet50``: teachers built through timm with ``pretrained=False`` (nothing is
  downloaded), with an optional CIFAR stem (3x3 stride-1 conv, no max-pool).
- ``tiny`` and ``paper``: the package's smallest model and the paper's student.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from paperzoo.core.registry import Registry


class MLP(nn.Module):
    """A multilayer perceptron over flattened inputs: ``in -> hidden... -> num_classes``."""

    def __init__(self, in_features: int = 64, hidden: Sequence[int] = (256, 256),
                 num_classes: int = 10, dropout: float = 0.0) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"MLP sizes must be positive: in={in_features}, hidden={tuple(hidden)}, "
                             f"classes={num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.num_features = width
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class TinyCNN(nn.Module):
    """Two 3x3 convolutions with BatchNorm, global average pooling and a linear head."""

    def __init__(self, in_chans: int = 1, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(2 * width, num_classes)
        self.num_features = 2 * width
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _conv_bn(in_chans: int, out_chans: int, kernel: int, stride: int, groups: int = 1,
             act: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chans, out_chans, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_chans),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """MobileNetV2's inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 linear project."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_chans * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += _conv_bn(in_chans, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, out_chans, 1, 1, act=False)
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2CIFAR(nn.Module):
    """MobileNetV2 with expansion ``T`` and width ``W``, CIFAR variant (paper section 4.1).

    As in the CIFAR-100 distillation literature the paper follows: a stride-2 3x3 first
    convolution on 32x32 inputs, the second stage at stride 1, a 1280-d last convolution, global
    average pooling and a linear classifier. ``T`` replaces every expansion factor except the
    first block's (which is 1).
    """

    # (expansion, channels, repeats, stride); expansion None means "use T".
    STAGES = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
              (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))

    def __init__(self, expansion: int = 6, width: float = 0.5, num_classes: int = 100,
                 in_chans: int = 3, last_channels: int = 1280) -> None:
        super().__init__()
        if expansion < 1 or width <= 0:
            raise ValueError(f"expansion must be >= 1 and width > 0, got T={expansion}, W={width}")
        channels = int(32 * width)
        layers: list[nn.Module] = _conv_bn(in_chans, channels, 3, 2)
        for stage_expansion, stage_channels, repeats, stride in self.STAGES:
            out_chans = int(stage_channels * width)
            for repeat in range(repeats):
                layers.append(InvertedResidual(channels, out_chans, stride if repeat == 0 else 1,
                                               expansion if stage_expansion is None else stage_expansion))
                channels = out_chans
        layers += _conv_bn(channels, last_channels, 1, 1)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(last_channels, num_classes)
        self.num_features = last_channels
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _timm_resnet(name: str, num_classes: int = 100, in_chans: int = 3,
                 cifar_stem: bool = True) -> nn.Module:
    """A timm ResNet built with ``pretrained=False``; ``cifar_stem`` swaps in a 3x3 stride-1 stem."""
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_chans, model.conv1.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    model.num_classes = num_classes
    return model


# Presets as data, through the core's registry; ``tiny`` and ``paper`` are the package's smallest
# model and the paper's CIFAR-100 student.
MODELS = Registry("model")
MODELS.add("mlp_tiny", MLP, in_features=64, hidden=(16,), num_classes=10, dropout=0.0)
MODELS.add("tiny", MLP, in_features=64, hidden=(16,), num_classes=10, dropout=0.0)
MODELS.add("mlp_teacher", MLP, in_features=64, hidden=(256, 256), num_classes=10, dropout=0.2)
MODELS.add("mlp_student", MLP, in_features=64, hidden=(12,), num_classes=10, dropout=0.0)
MODELS.add("cnn_tiny", TinyCNN, in_chans=1, width=8, num_classes=10)
MODELS.add("mobilenetv2_t6_w05", MobileNetV2CIFAR, expansion=6, width=0.5, num_classes=100, in_chans=3)
MODELS.add("paper", MobileNetV2CIFAR, expansion=6, width=0.5, num_classes=100, in_chans=3)
MODELS.add("resnet18", partial(_timm_resnet, "resnet18"), num_classes=100, in_chans=3, cifar_stem=True)
MODELS.add("resnet50", partial(_timm_resnet, "resnet50"), num_classes=100, in_chans=3, cifar_stem=True)

create_model = MODELS.create
list_models = MODELS.names


def preset_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments preset ``name`` stands for (unknown names raise with the list)."""
    return MODELS.preset(name)

