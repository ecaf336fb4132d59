"""Building blocks of RSKNet-MTSP (paper section 2; items marked [R] are reconstructed).

- :class:`SKConv2d`: selective-kernel convolution (SKNet's split-fuse-select, softmax over branches).
- :class:`BasicBlock` / :class:`RSKBlock`: residual blocks, plain and selective-kernel.
- :class:`MTSP`: multiple time-scale statistics pooling (mean and standard deviation of several
  stages' feature maps over time); ``stages=(last,)`` is plain TSTP.
- :class:`LowRankLinear`, :class:`LowRankConv1x1`: W (m x n) ~ A (m x r) B (r x n) for the light
  variant; :class:`SeparableConv2d`: depthwise 3x3 + BN + pointwise 1x1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

Dilations = Sequence[tuple[int, int]]


def check_rank_shrinks(in_features: int, out_features: int, rank: int, what: str = "rank") -> None:
    """A factorisation ``r (m + n)`` must hold fewer weights than the dense ``m n``."""
    if not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{what} must be a positive integer, got {rank!r}")
    if rank * (in_features + out_features) >= in_features * out_features:
        raise ValueError(
            f"{what}={rank} does not shrink a {out_features}x{in_features} layer: r(m+n) = "
            f"{rank * (in_features + out_features)} >= m n = {in_features * out_features}; "
            f"use r < {in_features * out_features / (in_features + out_features):.1f}")


def auto_pointwise_rank(in_ch: int, out_ch: int) -> int | None:
    """Section 2 default for -L pointwise convs: r = ceil(min(C_in, C_out) / 4), None if no saving."""
    rank = math.ceil(min(in_ch, out_ch) / 4)
    return rank if rank * (in_ch + out_ch) < in_ch * out_ch else None


class LowRankLinear(nn.Module):
    """``y = A (B x) + b`` with ``B: r x n`` and ``A: m x r`` (section 2, -L low-rank layers)."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        check_rank_shrinks(in_features, out_features, rank)
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)  # B
        self.second = nn.Linear(rank, out_features, bias=bias)  # A
        self.factors_from = "trained"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


class LowRankConv1x1(nn.Module):
    """A 1x1 convolution factorised as ``in -> r -> out`` (section 2, -L pointwise convs)."""

    def __init__(self, in_ch: int, out_ch: int, rank: int, bias: bool = False) -> None:
        super().__init__()
        check_rank_shrinks(in_ch, out_ch, rank)
        self.in_channels, self.out_channels, self.rank = in_ch, out_ch, rank
        self.first = nn.Conv2d(in_ch, rank, 1, bias=False)
        self.second = nn.Conv2d(rank, out_ch, 1, bias=bias)
        self.factors_from = "trained"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def pointwise(in_ch: int, out_ch: int, rank: int | str | None = None) -> nn.Module:
    """A 1x1 conv: dense (``rank=None``), low-rank with an explicit rank, or ``"auto"``."""
    if rank == "auto":
        rank = auto_pointwise_rank(in_ch, out_ch)
    if rank is None:
        return nn.Conv2d(in_ch, out_ch, 1, bias=False)
    return LowRankConv1x1(in_ch, out_ch, int(rank))


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 (stride, dilation) + BN + pointwise 1x1 (section 2, -L)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: tuple[int, int] = (1, 1),
                 pw_rank: int | str | None = None) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=dilation, dilation=dilation,
                                   groups=in_ch, bias=False)
        self.depthwise_bn = nn.BatchNorm2d(in_ch)
        self.pointwise = pointwise(in_ch, out_ch, pw_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise_bn(self.depthwise(x)))


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, separable: bool = False,
            pw_rank: int | str | None = None) -> nn.Module:
    if separable:
        return SeparableConv2d(in_ch, out_ch, stride, pw_rank=pw_rank)
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class SKConv2d(nn.Module):
    """Selective-kernel convolution [R] (SKNet, Li et al. 2019, adapted in section 2).

    Split: M branches ``3x3 conv (dilation d_m, padding d_m, stride s) -> BN -> ReLU`` give U_m.
    Fuse: ``s = mean_{F,T} sum_m U_m``; ``z = ReLU(BN(W_f s))`` with ``d = max(C // reduction, min_dim)``.
    Select: logits ``W_m z`` stacked to (B, M, C), softmax over M per channel, ``V = sum_m a_m U_m``.
    ``separable``: depthwise branches (C_in channels) and one pointwise conv (+BN) after selection.
    ``forward(x, attn=...)`` accepts a forced attention (B or 1, M, C); ``last_attn`` keeps the last one.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1,
                 dilations: Dilations = ((1, 1), (2, 2)), reduction: int = 16, min_dim: int = 32,
                 branch_act: bool = True, separable: bool = False,
                 pw_rank: int | str | None = None) -> None:
        super().__init__()
        dilations = [tuple(int(v) for v in d) for d in dilations]
        if len(dilations) < 2:
            raise ValueError(f"SKConv2d needs at least 2 branches (dilations), got {dilations}")
        if any(len(d) != 2 or min(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be pairs of positive integers, got {dilations}")
        if reduction < 1 or min_dim < 1:
            raise ValueError(f"reduction and min_dim must be >= 1, got {reduction}, {min_dim}")
        self.separable = separable
        branch_ch = in_ch if separable else out_ch
        self.branches = nn.ModuleList()
        for dilation in dilations:
            conv = nn.Conv2d(in_ch, branch_ch, 3, stride=stride, padding=dilation, dilation=dilation,
                             groups=in_ch if separable else 1, bias=False)
            layers: list[nn.Module] = [conv, nn.BatchNorm2d(branch_ch)]
            if branch_act:
                layers.append(nn.ReLU(inplace=True))
            self.branches.append(nn.Sequential(*layers))
        hidden = max(branch_ch // reduction, min_dim)
        self.fuse = nn.Sequential(nn.Linear(branch_ch, hidden, bias=False), nn.BatchNorm1d(hidden),
                                  nn.ReLU(inplace=True))
        self.select = nn.Linear(hidden, len(dilations) * branch_ch)
        self.num_branches, self.branch_channels = len(dilations), branch_ch
        self.pointwise = (nn.Sequential(pointwise(in_ch, out_ch, pw_rank), nn.BatchNorm2d(out_ch))
                          if separable else nn.Identity())
        self.last_attn: torch.Tensor | None = None

    def attention(self, branches: torch.Tensor) -> torch.Tensor:
        """(B, M, C, F, T) branch outputs -> (B, M, C) softmax weights (sum to 1 over M)."""
        summary = branches.sum(dim=1).mean(dim=(2, 3))
        logits = self.select(self.fuse(summary)).view(-1, self.num_branches, self.branch_channels)
        return logits.softmax(dim=1)

    def forward(self, x: torch.Tensor, attn: torch.Tensor | None = None) -> torch.Tensor:
        branches = torch.stack([branch(x) for branch in self.branches], dim=1)
        if attn is None:
            attn = self.attention(branches)
        elif attn.shape[-2:] != (self.num_branches, self.branch_channels):
            raise ValueError(f"forced attn must have shape (B, {self.num_branches}, "
                             f"{self.branch_channels}), got {tuple(attn.shape)}")
        self.last_attn = attn.detach()
        selected = (attn[..., None, None] * branches).sum(dim=1)
        return self.pointwise(selected)


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3(stride)-BN-ReLU-conv3x3-BN, + shortcut, ReLU (thin ResNet-34)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, separable: bool = False,
                 pw_rank: int | str | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride, separable, pw_rank)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch, 1, separable, pw_rank)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = _shortcut(in_ch, out_ch, stride, separable, pw_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def _shortcut(in_ch: int, out_ch: int, stride: int, separable: bool,
              pw_rank: int | str | None) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    if separable:  # -L: the projection is a pointwise conv too, low-rank where it saves weights
        return nn.Sequential(nn.AvgPool2d(stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                             pointwise(in_ch, out_ch, pw_rank), nn.BatchNorm2d(out_ch))
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))


class RSKBlock(nn.Module):
    """Residual selective-kernel block [R]: conv3x3(stride)-BN-ReLU -> SKConv2d(branch_act=False)
    -> + shortcut -> ReLU. ``sk_on="both"`` makes the first conv selective-kernel too."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, sk_on: str = "second",
                 separable: bool = False, pw_rank: int | str | None = None,
                 dilations: Dilations = ((1, 1), (2, 2)), reduction: int = 16, min_dim: int = 32) -> None:
        super().__init__()
        if sk_on not in ("second", "both"):
            raise ValueError(f"sk_on must be 'second' or 'both', got {sk_on!r}")
        sk = dict(dilations=dilations, reduction=reduction, min_dim=min_dim, separable=separable,
                  pw_rank=pw_rank)
        if sk_on == "both":
            self.conv1 = SKConv2d(in_ch, out_ch, stride, branch_act=False, **sk)
        else:
            self.conv1 = conv3x3(in_ch, out_ch, stride, separable, pw_rank)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.sk = SKConv2d(out_ch, out_ch, 1, branch_act=False, **sk)
        self.shortcut = _shortcut(in_ch, out_ch, stride, separable, pw_rank)

    def forward(self, x: torch.Tensor, attn: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.sk(out, attn=attn) + self.shortcut(x))


def _stats(x: torch.Tensor, eps: float) -> torch.Tensor:
    """[mean; sqrt(population variance + eps)] over the last axis: finite gradients for any T >= 1."""
    mean = x.mean(dim=-1)
    var = (x - mean.unsqueeze(-1)).pow(2).mean(dim=-1)
    return torch.cat([mean, torch.sqrt(var + eps)], dim=-1)


class MTSP(nn.Module):
    """Multiple time-scale statistics pooling [R] (section 2).

    ``stage_shapes[s] = (C_s, F_s)``; for each s in ``stages`` the (B, C_s, F_s, T_s) map is read
    as (B, C_s F_s, T_s) (or projected to ``stage_proj_dim`` by a 1x1 conv), and [mu_s; sigma_s]
    over time are concatenated: ``out_dim = sum 2 C_s F_s``. ``mode="pyramid"`` pools the last
    listed stage over 1, 2 and 4 equal time segments as well. ``stages=(last,)`` is TSTP.
    """

    def __init__(self, stage_shapes: Sequence[tuple[int, int]], stages: Sequence[int] = (1, 2, 3),
                 mode: str = "stages", eps: float = 1e-5, stage_proj_dim: int | None = None) -> None:
        super().__init__()
        stages = tuple(int(s) for s in stages)
        if not stages:
            raise ValueError("MTSP needs at least one stage")
        bad = [s for s in stages if not 0 <= s < len(stage_shapes)]
        if bad:
            raise ValueError(f"MTSP stage(s) {bad} out of range: the backbone has stages "
                             f"0..{len(stage_shapes) - 1}")
        if len(set(stages)) != len(stages):
            raise ValueError(f"MTSP stages must be distinct, got {stages}")
        if mode not in ("stages", "pyramid"):
            raise ValueError(f"MTSP mode must be 'stages' or 'pyramid', got {mode!r}")
        if stage_proj_dim is not None and stage_proj_dim < 1:
            raise ValueError(f"stage_proj_dim must be positive, got {stage_proj_dim}")
        self.stages, self.mode, self.eps = stages, mode, eps
        widths = [int(stage_shapes[s][0]) * int(stage_shapes[s][1]) for s in stages]
        if stage_proj_dim is not None:
            self.proj = nn.ModuleList(nn.Conv1d(w, stage_proj_dim, 1) for w in widths)
            widths = [stage_proj_dim] * len(stages)
        else:
            self.proj = None
        self.segments = (1, 2, 4) if mode == "pyramid" else (1,)
        self.out_dim = 2 * sum(widths[:-1]) + 2 * widths[-1] * sum(self.segments)

    def forward(self, feature_maps: Sequence[torch.Tensor]) -> torch.Tensor:
        pooled = []
        for i, stage in enumerate(self.stages):
            fmap = feature_maps[stage]
            seq = fmap.flatten(1, 2)  # (B, C_s F_s, T_s)
            if self.proj is not None:
                seq = self.proj[i](seq)
            is_last = i == len(self.stages) - 1
            for count in (self.segments if is_last else (1,)):
                if seq.shape[-1] < count:
                    raise ValueError(f"stage {stage} has {seq.shape[-1]} frames, fewer than the "
                                     f"{count} pyramid segments; use a longer input")
                for segment in torch.tensor_split(seq, count, dim=-1):
                    pooled.append(_stats(segment, self.eps))
        return torch.cat(pooled, dim=-1)
