"""High-order attention and the two discrepant fusions of HODINet (spec section 1).

``HighOrderAttention`` is the order-R attention after MHN (reconstructed); ``HOSF`` fuses RGB and
depth with a high-order *spatial* map (stages 1-2), ``HOCF`` with a high-order *channel* vector
(stages 3-4). Both concatenate the re-weighted modalities before a 3x3 convolution, so the
convolution can weight RGB and depth differently ("discrepant"), and add the high-order feature
back as a residual.
"""

from __future__ import annotations

import torch
from torch import nn

JOINTS = ("add", "concat")


class ConvBNReLU(nn.Sequential):
    """``CBR``: convolution (no bias), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 dilation: int = 1) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class HighOrderAttention(nn.Module):
    """``A = (1/R) sum_k sigmoid(V_k ReLU(prod_{s<=k} W_{k,s} X))`` in (0, 1)^{C x H x W}.

    For each order k = 1..R, k bias-free 1x1 projections ``C -> C/reduction`` are multiplied
    element-wise (a k-th order polynomial of X), passed through ReLU and projected back to C
    channels by ``V_k`` (1x1, with bias) before a sigmoid (spec section 1, reconstructed after MHN).
    The k projections of order k are one convolution with ``k * C/reduction`` outputs.
    """

    def __init__(self, channels: int, order: int = 3, reduction: int = 4) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if channels < 1 or reduction < 1 or channels // reduction < 1:
            raise ValueError(f"channels ({channels}) // reduction ({reduction}) must be >= 1")
        self.channels, self.order, self.hidden = channels, order, channels // reduction
        self.projections = nn.ModuleList(
            nn.Conv2d(channels, k * self.hidden, 1, bias=False) for k in range(1, order + 1))
        self.outputs = nn.ModuleList(nn.Conv2d(self.hidden, channels, 1) for _ in range(order))

    def order_terms(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``Z_k = ReLU(prod_s W_{k,s} X)`` for k = 1..R, each ``(B, C/reduction, H, W)``."""
        terms = []
        for k, projection in enumerate(self.projections, start=1):
            factors = projection(x).unflatten(1, (k, self.hidden))
            terms.append(torch.relu(factors.prod(dim=1)))
        return terms

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = [torch.sigmoid(v(z)) for v, z in zip(self.outputs, self.order_terms(x))]
        return torch.stack(gates).mean(dim=0)


class _DiscrepantFusion(nn.Module):
    """Shared part of HOSF and HOCF: joint input, high-order feature, concat-conv of r and d."""

    def __init__(self, channels: int, order: int = 3, joint: str = "add") -> None:
        super().__init__()
        if joint not in JOINTS:
            raise ValueError(f"joint must be one of {JOINTS}, got {joint!r}")
        self.joint = joint
        self.joint_conv = ConvBNReLU(2 * channels, channels) if joint == "concat" else None
        self.attention = HighOrderAttention(channels, order)
        self.fuse = ConvBNReLU(2 * channels, channels, 3)

    def high_order_feature(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """``H = X * A(X)`` with ``X = r + d`` (or ``CBR1x1([r; d])`` when ``joint='concat'``)."""
        x = self.joint_conv(torch.cat([r, d], 1)) if self.joint_conv is not None else r + d
        return x * self.attention(x)

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, r: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = self.high_order_feature(r, d)
        w = self.weights(h)
        return self.fuse(torch.cat([r * w, d * w], 1)) + h


class HOSF(_DiscrepantFusion):
    """High-order spatial fusion (stages 1-2): ``S = sigmoid(conv7x7([mean_c H; max_c H]))``,
    ``F = CBR3x3([r * S; d * S]) + H`` (spec section 1; internals reconstructed)."""

    def __init__(self, channels: int, order: int = 3, joint: str = "add") -> None:
        super().__init__(channels, order, joint)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """The spatial map ``S`` in (0, 1)^{B x 1 x H x W}."""
        pooled = torch.cat([h.mean(dim=1, keepdim=True), h.amax(dim=1, keepdim=True)], 1)
        return torch.sigmoid(self.spatial(pooled))


class HOCF(_DiscrepantFusion):
    """High-order channel fusion (stages 3-4): ``c = sigmoid(MLP(GAP H) + MLP(GMP H))`` with one
    shared MLP ``C -> C/4 -> C``; ``F = CBR3x3([r * c; d * c]) + H`` (spec section 1)."""

    def __init__(self, channels: int, order: int = 3, joint: str = "add", reduction: int = 4) -> None:
        super().__init__(channels, order, joint)
        hidden = max(1, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1))

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        """The channel vector ``c`` in (0, 1)^{B x C x 1 x 1}."""
        average = self.mlp(h.mean(dim=(2, 3), keepdim=True))
        maximum = self.mlp(h.amax(dim=(2, 3), keepdim=True))
        return torch.sigmoid(average + maximum)


class SingleBranchFusion(nn.Module):
    """The baselines' fusions: ``add`` (``CBR3x3(r + d)``), ``rgb`` (``CBR3x3(r)``), ``depth``."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        if kind not in ("add", "rgb", "depth"):
            raise ValueError(f"unknown single-branch fusion {kind!r}")
        self.kind = kind
        self.fuse = ConvBNReLU(channels, channels, 3)

    def forward(self, r: torch.Tensor | None, d: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "add":
            return self.fuse(r + d)
        return self.fuse(r if self.kind == "rgb" else d)
