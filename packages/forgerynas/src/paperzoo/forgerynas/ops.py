"""The candidate operations of the search spaces (spec section 1, "Space" and "CDC").

``forgery`` (11 ops): ``none``, ``max_pool_3x3``, ``skip_connect`` and separable / dilated
central-difference convolutions at theta in {0.0, 0.5, 0.7, 0.8}. ``darts`` is the 8-op DARTS
set used by the vanilla baseline; ``extended`` (opt-in) adds SRM, Bayar and inverted-residual ops,
the authors' discarded trials.

Every constructor has the signature ``(C, stride, affine) -> nn.Module`` and keeps the channel
count; a stride-2 op halves the resolution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CDCConv2d",
    "SepCDC",
    "DilCDC",
    "SepConv",
    "DilConv",
    "ReLUConvBN",
    "FactorizedReduce",
    "Zero",
    "SPACES",
    "THETAS",
    "build_op",
    "check_space",
    "space_ops",
]

THETAS = (0.0, 0.5, 0.7, 0.8)


def _check_theta(theta: float) -> float:
    if not 0.0 <= float(theta) <= 1.0:
        raise ValueError(f"theta must lie in [0, 1], got {theta}")
    return float(theta)


class CDCConv2d(nn.Conv2d):
    """Central-difference convolution (spec "CDC", pitfall 6).

    ``y(p0) = theta * sum_n w(pn) (x(p0 + pn) - x(p0)) + (1 - theta) * sum_n w(pn) x(p0 + pn)
    = conv(x, w) - theta * conv1x1(x, sum_spatial(w))``: the 1x1 term uses the same stride and
    groups, padding 0, so it reads the window's centre; the bias is added once.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        theta: float = 0.7,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
        self.theta = _check_theta(theta)
        k = self.kernel_size
        if self.padding != (dilation * (k[0] - 1) // 2, dilation * (k[1] - 1) // 2):
            raise ValueError(
                f"CDCConv2d needs 'same' padding (dilation * (k - 1) / 2) so the centre "
                f"term is aligned; got padding {padding} for kernel {kernel_size}, dilation {dilation}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if self.theta == 0.0:
            return out
        centre = self.weight.sum(dim=(2, 3), keepdim=True)
        return out - self.theta * F.conv2d(x, centre, None, self.stride, 0, 1, self.groups)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", theta={self.theta}"


class ReLUConvBN(nn.Sequential):
    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilCDC(nn.Sequential):
    """ReLU, depthwise 3x3 CDC with dilation 2, pointwise 1x1, BN (spec ``DilCDC_3x3_t``)."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        theta: float,
        affine: bool = True,
        kernel: int = 3,
        dilation: int = 2,
    ):
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            CDCConv2d(C_in, C_in, kernel, stride, pad, dilation, groups=C_in, theta=theta),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepCDC(nn.Sequential):
    """Twice (ReLU, depthwise 3x3 CDC, pointwise 1x1, BN), stride on the first (``SepCDC_3x3_t``)."""

    def __init__(
        self, C_in: int, C_out: int, stride: int, theta: float, affine: bool = True, kernel: int = 3
    ):
        pad = (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            CDCConv2d(C_in, C_in, kernel, stride, pad, groups=C_in, theta=theta),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            CDCConv2d(C_in, C_in, kernel, 1, pad, groups=C_in, theta=theta),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(SepCDC):
    """DARTS ``sep_conv_kxk``: a SepCDC with theta 0 (a plain depthwise-separable conv)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool = True):
        super().__init__(C_in, C_out, stride, 0.0, affine, kernel)


class DilConv(DilCDC):
    """DARTS ``dil_conv_kxk``: dilation 2, theta 0."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool = True):
        super().__init__(C_in, C_out, stride, 0.0, affine, kernel)


class Zero(nn.Module):
    """The ``none`` op: zeros at the output resolution."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Two offset stride-2 1x1 convs concatenated (DARTS), for the input after a reduction."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class _Pool(nn.Sequential):
    """A 3x3 pool; in the supernet (``affine=False``) followed by a BN without affine, as PC-DARTS."""

    def __init__(self, kind: str, C: int, stride: int, affine: bool):
        pool = (
            nn.MaxPool2d(3, stride, 1)
            if kind == "max"
            else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        )
        super().__init__(pool, *([] if affine else [nn.BatchNorm2d(C, affine=False)]))


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    # The official code: identity at stride 1, a 3x3 average pool on stride-2 edges.
    return nn.Identity() if stride == 1 else nn.AvgPool2d(3, stride, 1, count_include_pad=False)


class SRMConv(nn.Module):
    """Fixed SRM high-pass residual filters (depthwise), then pointwise 1x1 and BN (``extended``)."""

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__()
        kernel = torch.tensor([[-1.0, 2.0, -1.0], [2.0, -4.0, 2.0], [-1.0, 2.0, -1.0]]) / 4.0
        self.register_buffer("kernel", kernel.expand(C, 1, 3, 3).clone())
        self.stride = stride
        self.point = nn.Sequential(nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = F.conv2d(F.relu(x), self.kernel, None, self.stride, 1, 1, x.shape[1])
        return self.point(residual)


class BayarConv(nn.Module):
    """Bayar's constrained depthwise 3x3 (centre -1, the rest sums to 1), pointwise, BN (``extended``)."""

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(C, 1, 3, 3) * 0.1)
        centre = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
        centre[..., 1, 1] = True
        self.register_buffer("centre", centre)
        self.stride = stride
        self.point = nn.Sequential(nn.Conv2d(C, C, 1, bias=False), nn.BatchNorm2d(C, affine=affine))

    def constrained_weight(self) -> torch.Tensor:
        off = self.weight.masked_fill(self.centre, 0.0)
        off = off / off.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return off.masked_fill(self.centre, -1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point(
            F.conv2d(F.relu(x), self.constrained_weight(), None, self.stride, 1, 1, x.shape[1])
        )


class InvertedResidual(nn.Sequential):
    """MobileNet-v2 block: 1x1 expand (x3), depthwise 3x3, 1x1 project, BN (``extended``)."""

    def __init__(self, C: int, stride: int, affine: bool = True, expand: int = 3):
        hidden = C * expand
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


OpFactory = Callable[[int, int, bool], nn.Module]


def _forgery_ops() -> dict[str, OpFactory]:
    ops: dict[str, OpFactory] = {
        "none": lambda C, stride, affine: Zero(stride),
        "max_pool_3x3": lambda C, stride, affine: _Pool("max", C, stride, affine),
        "skip_connect": _skip,
    }
    for theta in THETAS:
        ops[f"SepCDC_3x3_{theta}"] = lambda C, stride, affine, t=theta: SepCDC(
            C, C, stride, t, affine
        )
        ops[f"DilCDC_3x3_{theta}"] = lambda C, stride, affine, t=theta: DilCDC(
            C, C, stride, t, affine
        )
    return ops


def _darts_ops() -> dict[str, OpFactory]:
    return {
        "none": lambda C, stride, affine: Zero(stride),
        "max_pool_3x3": lambda C, stride, affine: _Pool("max", C, stride, affine),
        "avg_pool_3x3": lambda C, stride, affine: _Pool("avg", C, stride, affine),
        "skip_connect": lambda C, stride, affine: (
            nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)
        ),
        "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, affine),
        "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, affine),
        "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, affine),
        "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, affine),
    }


def _extended_ops() -> dict[str, OpFactory]:
    return {
        **_forgery_ops(),
        "SRM": lambda C, stride, affine: SRMConv(C, stride, affine),
        "Bayar": lambda C, stride, affine: BayarConv(C, stride, affine),
        "inverted_residual_3x3": lambda C, stride, affine: InvertedResidual(C, stride, affine),
    }


SPACES: dict[str, dict[str, OpFactory]] = {
    "forgery": _forgery_ops(),
    "darts": _darts_ops(),
    "extended": _extended_ops(),
}


def check_space(space: str) -> str:
    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; choose from {', '.join(SPACES)}")
    return space


def space_ops(space: str) -> list[str]:
    """The op names of ``space`` in their fixed order (the columns of alpha)."""
    return list(SPACES[check_space(space)])


def build_op(
    name: str,
    C: int,
    stride: int,
    affine: bool = True,
    space: str = "forgery",
    paper_bug_compat: bool = False,
) -> nn.Module:
    """One op of ``space`` by name; ``paper_bug_compat`` wires ``DilCDC_3x3_0.7`` with theta 0,
    as the released code does."""
    ops = SPACES[check_space(space)]
    if name not in ops:
        raise ValueError(f"unknown op {name!r} in space {space!r}; choose from {', '.join(ops)}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    if paper_bug_compat and name == "DilCDC_3x3_0.7":
        return DilCDC(C, C, stride, 0.0, affine)
    return ops[name](C, stride, affine)


def cdc_explicit(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
    theta: float,
) -> torch.Tensor:
    """CDC by its definition, ``sum_n w(pn) (x(p0 + pn) - theta * x(p0))``, from unfolded patches:
    the reference the fast form is checked against (spec V1)."""
    b, c_in, h, w = x.shape
    c_out, c_per, k, _ = weight.shape
    patches = F.unfold(x, k, dilation=dilation, padding=padding, stride=stride)  # (B, C*k*k, L)
    length = patches.shape[-1]
    patches = patches.view(b, groups, c_per, k * k, length)
    centre = patches[:, :, :, (k * k) // 2 : (k * k) // 2 + 1, :]
    diff = patches - theta * centre
    w = weight.view(groups, c_out // groups, c_per, k * k)
    out = torch.einsum("bgcnl,gocn->bgol", diff, w).reshape(b, c_out, length)
    if bias is not None:
        out = out + bias.view(1, -1, 1)
    h_out = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    return out.view(b, c_out, h_out, -1)
