"""The cascaded pyramid decoder of HODINet (spec section 1; top-down [paper], internals
reconstructed): a dilated pyramid block per level and a dense top-down cascade with a side head
per level (deep supervision)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.hodinet.attention import ConvBNReLU


class PyramidBlock(nn.Module):
    """``P(x) = x + CBR1x1([conv3x3_dil(x) for dil in dilations])``."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 2, 4, 8)) -> None:
        super().__init__()
        if not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be a non-empty list of integers >= 1, got {list(dilations)}")
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=int(d), dilation=int(d)) for d in dilations)
        self.merge = ConvBNReLU(len(self.branches) * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.merge(torch.cat([branch(x) for branch in self.branches], 1))


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class CascadedPyramidDecoder(nn.Module):
    """``G_4 = P(F_4)``, ``G_i = P(F_i + sum_{j>i} Up(G_j))`` (``dense=False``: only ``G_{i+1}``);
    a 3x3 head per level gives side logits, fine to coarse."""

    def __init__(self, channels: int, levels: int = 4, dilations: Sequence[int] = (1, 2, 4, 8),
                 dense: bool = True) -> None:
        super().__init__()
        self.dense = dense
        self.blocks = nn.ModuleList(PyramidBlock(channels, dilations) for _ in range(levels))
        self.heads = nn.ModuleList(nn.Conv2d(channels, 1, 3, padding=1) for _ in range(levels))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``features`` fine to coarse; returns side logits fine to coarse at each level's size."""
        decoded: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
        for i in reversed(range(len(features))):
            x = features[i]
            coarser = decoded[i + 1:] if self.dense else decoded[i + 1:i + 2]
            for g in coarser:
                x = x + _up(g, x.shape[-2:])
            decoded[i] = self.blocks[i](x)
        return [head(g) for head, g in zip(self.heads, decoded)]
