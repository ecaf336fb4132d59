"""The vertical FL model of CAFE (paper Sec. 3, Fig. 1): one ``LocalNet`` per party and a
``ServerHead`` on the concatenated party outputs. Plain torch, no Lightning.

Every ``LocalNet`` is split at its first fully connected layer (paper Sec. 4.1):
``H = features(x)`` (the extractor output, ``d1`` wide) and ``u = first_fc(H) = W H + b``
(``d2`` wide). CAFE's Steps I and II read exactly the gradients of ``first_fc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

FIRST_FC_WEIGHT = "first_fc.weight"
FIRST_FC_BIAS = "first_fc.bias"


class LocalNet(nn.Module):
    """A party's local model: convolutional extractor ``g_m``, first FC layer, then an MLP.

    Args:
        part_shape: ``(C, H, W)`` of the party's block of each sample.
        conv_channels: output channels of each conv block (conv, ReLU, optional max-pool).
        kernel_size: conv kernel (padding keeps the spatial size).
        pool: 2 x 2 max-pool (ceil mode, as TF's ``same``) after each conv block.
        fc_dims: widths of the FC layers; the first is ``d2`` (the ``first_fc`` layer), the last
            is the party's output width sent to the server.
        first_fc_bias: CAFE needs the bias (Sec. 4.1); ``False`` exists to test that it says so.
    """

    def __init__(
        self,
        part_shape: Sequence[int],
        conv_channels: Sequence[int] = (8,),
        kernel_size: int = 3,
        pool: bool = False,
        fc_dims: Sequence[int] = (64, 10),
        first_fc_bias: bool = True,
    ) -> None:
        super().__init__()
        if len(part_shape) != 3:
            raise ValueError(f"part_shape must be (C, H, W), got {tuple(part_shape)}")
        if len(fc_dims) < 1:
            raise ValueError("fc_dims needs at least the first FC layer's width")
        self.part_shape = tuple(int(s) for s in part_shape)
        layers: list[nn.Module] = []
        channels = self.part_shape[0]
        for out_channels in conv_channels:
            layers += [nn.Conv2d(channels, out_channels, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out_channels
        layers.append(nn.Flatten())
        self.features_net = nn.Sequential(*layers)
        with torch.no_grad():
            self.d1 = int(self.features_net(torch.zeros(1, *self.part_shape)).shape[1])
        self.d2 = int(fc_dims[0])
        self.first_fc = nn.Linear(self.d1, self.d2, bias=first_fc_bias)
        rest: list[nn.Module] = []
        width = self.d2
        for dim in fc_dims[1:]:
            rest += [nn.ReLU(), nn.Linear(width, int(dim))]
            width = int(dim)
        self.rest = nn.Sequential(*rest)
        self.out_dim = width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``H = g_m(x_m)``: the flattened extractor output, ``(batch, d1)``."""
        return self.features_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rest(self.first_fc(self.features(x)))


class ServerHead(nn.Module):
    """The server's layer on the concatenated party outputs; returns logits.

    ``double_softmax=True`` reproduces the official code's defect (a softmax here, then softmax
    cross-entropy in the loss), which shrinks every gradient; off by default.
    """

    def __init__(self, in_dim: int, classes: int, double_softmax: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, classes)
        self.double_softmax = double_softmax

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.linear(z)
        return F.softmax(out, dim=1) if self.double_softmax else out


class VFLModel(nn.Module):
    """All parties' local models plus the server head: ``parts -> logits``."""

    def __init__(self, parties: Sequence[LocalNet], head: ServerHead) -> None:
        super().__init__()
        self.parties = nn.ModuleList(parties)
        self.head = head

    @property
    def num_parties(self) -> int:
        return len(self.parties)

    def forward(self, parts: Sequence[torch.Tensor], return_features: bool = False) -> Any:
        if len(parts) != len(self.parties):
            raise ValueError(f"got {len(parts)} feature blocks for {len(self.parties)} parties")
        features = [party.features(x) for party, x in zip(self.parties, parts)]
        outputs = [party.rest(party.first_fc(h)) for party, h in zip(self.parties, features)]
        logits = self.head(torch.cat(outputs, dim=1))
        return (logits, features) if return_features else logits

    def party_parameter_names(self, m: int) -> list[str]:
        return [name for name, _ in self.parties[m].named_parameters()]


# Presets as data (timm-style). ``part_shape`` is the default block of one party.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny_digits": dict(part_shape=(1, 4, 4), conv_channels=(8,), kernel_size=3, pool=False,
                        fc_dims=(64, 10)),
    "paper_mnist": dict(part_shape=(1, 14, 14), conv_channels=(64, 128), kernel_size=5, pool=True,
                        fc_dims=(256, 64, 10)),
    "paper_cifar": dict(part_shape=(3, 16, 16), conv_channels=(64, 128), kernel_size=5, pool=True,
                        fc_dims=(256, 64, 10)),
}
ALIASES = {"tiny": "tiny_digits", "paper": "paper_mnist"}


def list_models() -> list[str]:
    """Preset names accepted by :func:`create_model` (aliases included)."""
    return sorted([*PRESETS, *ALIASES])


def create_model(
    name: str = "tiny_digits",
    num_parties: int = 4,
    classes: int = 10,
    double_softmax: bool = False,
    seed: int | None = None,
    **overrides: Any,
) -> VFLModel:
    """Build a VFL model from a preset; ``overrides`` change ``LocalNet`` arguments
    (``part_shape`` for other data, ``first_fc_bias``, ``fc_dims``, ...)."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    if num_parties < 1:
        raise ValueError(f"num_parties must be >= 1, got {num_parties}")
    settings = {**PRESETS[key], **overrides}
    unknown = set(settings) - {"part_shape", "conv_channels", "kernel_size", "pool", "fc_dims",
                               "first_fc_bias"}
    if unknown:
        raise ValueError(f"unknown LocalNet option(s) {sorted(unknown)} for model {name!r}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        parties = [LocalNet(**settings) for _ in range(num_parties)]
        head = ServerHead(num_parties * parties[0].out_dim, classes, double_softmax=double_softmax)
    return VFLModel(parties, head)
