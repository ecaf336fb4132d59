from __future__ import annotations

import pytest
import torch
from torch import nn

from paperzoo.forgerynas.ops import SPACES, CDCConv2d, DilCDC, SepCDC, build_op, cdc_explicit


def test_cdc_theta0_equals_plain_conv():
    torch.manual_seed(0)
    cdc = CDCConv2d(4, 6, 3, 1, 1, bias=True, theta=0.0)
    conv = nn.Conv2d(4, 6, 3, 1, 1, bias=True)
    conv.load_state_dict(cdc.state_dict())
    x = torch.randn(2, 4, 9, 9)
    assert torch.allclose(cdc(x), conv(x), atol=1e-6)


@pytest.mark.parametrize("theta", [0.5, 0.8])
@pytest.mark.parametrize(
    "stride,dilation,groups", [(1, 1, 1), (2, 1, 1), (1, 2, 4), (2, 2, 4), (1, 1, 4)]
)
def test_cdc_matches_explicit_formula(theta, stride, dilation, groups):
    torch.manual_seed(1)
    layer = CDCConv2d(4, 4, 3, stride, dilation, dilation, groups, bias=True, theta=theta).double()
    x = torch.randn(2, 4, 10, 10, dtype=torch.float64)
    reference = cdc_explicit(x, layer.weight, layer.bias, stride, dilation, dilation, groups, theta)
    assert layer(x).shape == reference.shape
    assert (layer(x) - reference).abs().max().item() < 1e-10


def test_cdc_hand_computed_value():
    # one 3x3 window of ones, weights all 1, theta 0.5: 9 - 0.5 * 9 * x(p0)
    layer = CDCConv2d(1, 1, 3, 1, 1, theta=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 2.0
    x[0, 0, 0, 0] = 1.0
    # centre: sum = 3, minus 0.5 * 9 * 2 = 9 -> -6
    assert layer(x)[0, 0, 1, 1].item() == pytest.approx(3.0 - 9.0)


def test_cdc_1x1_is_scaled_conv():
    cdc = CDCConv2d(3, 5, 1, 1, 0, theta=0.7)
    conv = nn.Conv2d(3, 5, 1, bias=False)
    conv.load_state_dict(cdc.state_dict())
    x = torch.randn(2, 3, 6, 6)
    assert torch.allclose(cdc(x), 0.3 * conv(x), atol=1e-6)


def test_cdc_bad_inputs():
    with pytest.raises(ValueError, match="theta"):
        CDCConv2d(2, 2, 3, 1, 1, theta=1.5)
    with pytest.raises(ValueError, match="padding"):
        CDCConv2d(2, 2, 3, 1, 0, theta=0.5)


def test_paper_bug_compat_wires_theta_zero():
    assert build_op("DilCDC_3x3_0.7", 4, 1)[1].theta == 0.7
    assert build_op("DilCDC_3x3_0.7", 4, 1, paper_bug_compat=True)[1].theta == 0.0
    assert build_op("DilCDC_3x3_0.8", 4, 1, paper_bug_compat=True)[1].theta == 0.8


def test_spaces_and_shapes():
    assert len(SPACES["forgery"]) == 11 and len(SPACES["darts"]) == 8
    assert isinstance(build_op("SepCDC_3x3_0.5", 4, 1), SepCDC)
    assert isinstance(build_op("DilCDC_3x3_0.5", 4, 1), DilCDC)
    x = torch.randn(2, 4, 8, 8)
    for space in SPACES:
        for name in SPACES[space]:
            for stride in (1, 2):
                out = build_op(name, 4, stride, space=space)(x)
                assert out.shape == (2, 4, 8 // stride, 8 // stride), (space, name, stride)
    # skip_connect on a stride-2 edge is a 3x3 average pool, as in the released code
    assert isinstance(build_op("skip_connect", 4, 2), nn.AvgPool2d)


def test_unknown_op_or_space():
    with pytest.raises(ValueError, match="unknown op"):
        build_op("conv_9x9", 4, 1)
    with pytest.raises(ValueError, match="unknown search space"):
        build_op("none", 4, 1, space="nas")
