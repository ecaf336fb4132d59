"""Selective-kernel convolution, residual blocks, MTSP and low-rank layers (spec section 9)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paperzoo.core.testing import check_finite_gradients
from paperzoo.rsknet.compress import count_params, lowrank_from_dense
from paperzoo.rsknet.layers import (
    MTSP,
    BasicBlock,
    LowRankConv1x1,
    LowRankLinear,
    RSKBlock,
    SeparableConv2d,
    SKConv2d,
)


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_sk_attention_sums_to_one_over_branches():
    torch.manual_seed(0)
    sk = SKConv2d(4, 6, dilations=((1, 1), (2, 2), (1, 3))).eval()
    sk(torch.randn(3, 4, 10, 12))
    attn = sk.last_attn
    assert attn.shape == (3, 3, 6)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(3, 6))
    assert (attn > 0).all() and not torch.allclose(attn, torch.full_like(attn, 1 / 3))


@pytest.mark.parametrize("branch", [0, 1])
def test_one_hot_attention_reproduces_the_branch(branch):
    torch.manual_seed(1)
    sk = SKConv2d(4, 5).eval()
    _randomise_bn(sk)
    x = torch.randn(2, 4, 9, 11)
    attn = torch.zeros(1, 2, 5)
    attn[:, branch] = 1.0
    torch.testing.assert_close(sk(x, attn=attn), sk.branches[branch](x))


def test_rsk_block_with_one_hot_attention_equals_basic_block():
    torch.manual_seed(2)
    rsk, basic = RSKBlock(4, 8, stride=2).eval(), BasicBlock(4, 8, stride=2).eval()
    _randomise_bn(rsk, 3)
    basic.conv1.load_state_dict(rsk.conv1.state_dict())
    basic.bn1.load_state_dict(rsk.bn1.state_dict())
    basic.conv2.load_state_dict(rsk.sk.branches[0][0].state_dict())
    basic.bn2.load_state_dict(rsk.sk.branches[0][1].state_dict())
    basic.shortcut.load_state_dict(rsk.shortcut.state_dict())
    x = torch.randn(2, 4, 16, 20)
    attn = torch.tensor([1.0, 0.0])[None, :, None].expand(1, 2, 8)
    torch.testing.assert_close(rsk(x, attn=attn), basic(x))
    assert not torch.allclose(rsk(x), basic(x))


def test_dilated_branch_sees_further():
    sk = SKConv2d(1, 1, dilations=((1, 1), (2, 2)), branch_act=False).eval()
    for branch in sk.branches:
        branch[0].weight.data.fill_(1.0)
    x = torch.zeros(1, 1, 11, 11)
    x[..., 5, 5] = 1.0
    reach = [(branch[0](x)[0, 0].abs() > 0).sum().item() for branch in sk.branches]
    assert reach == [9, 9] and (sk.branches[1][0](x)[0, 0, 3, 3] != 0) and (sk.branches[0][0](x)[0, 0, 3, 3] == 0)


def test_forced_attention_shape_is_checked():
    with pytest.raises(ValueError, match="forced attn"):
        SKConv2d(2, 3)(torch.randn(1, 2, 5, 5), attn=torch.ones(1, 3, 3))


def test_mtsp_out_dim_and_any_length():
    shapes = [(8, 40), (16, 20), (32, 10), (64, 5)]
    pool = MTSP(shapes, stages=(1, 2, 3))
    assert pool.out_dim == 2 * (16 * 20 + 32 * 10 + 64 * 5)
    for frames in (8, 9, 37):
        maps = [torch.randn(2, c, f, math.ceil(frames * 8 / 2**s)) for s, (c, f) in enumerate(shapes)]
        assert pool(maps).shape == (2, pool.out_dim)


def test_mtsp_single_stage_is_tstp_mean_and_std():
    pool = MTSP([(2, 3), (4, 2)], stages=(1,))
    fmap = torch.randn(2, 4, 2, 7, dtype=torch.float64)
    seq = fmap.flatten(1, 2)
    expected = torch.cat([seq.mean(-1), torch.sqrt(seq.var(-1, unbiased=False) + 1e-5)], dim=-1)
    torch.testing.assert_close(pool([None, fmap]), expected)


def test_mtsp_constant_input_has_finite_gradients():
    pool = MTSP([(2, 3), (4, 2)], stages=(0, 1))
    maps = [torch.ones(1, 2, 3, 1, requires_grad=True), torch.ones(1, 4, 2, 1, requires_grad=True)]
    pool(maps).sum().backward()
    assert all(torch.isfinite(m.grad).all() for m in maps)


def test_mtsp_options():
    shapes = [(2, 8), (4, 4)]
    pyramid = MTSP(shapes, stages=(0, 1), mode="pyramid")
    assert pyramid.out_dim == 2 * 16 + 2 * 16 * 7
    assert pyramid([torch.randn(1, 2, 8, 16), torch.randn(1, 4, 4, 8)]).shape == (1, pyramid.out_dim)
    proj = MTSP(shapes, stages=(0, 1), stage_proj_dim=5)
    assert proj.out_dim == 20
    with pytest.raises(ValueError, match="out of range"):
        MTSP(shapes, stages=(2,))
    with pytest.raises(ValueError, match="mode"):
        MTSP(shapes, stages=(1,), mode="median")


def test_full_rank_svd_layers_equal_dense():
    torch.manual_seed(3)
    dense = nn.Linear(6, 5)
    low = lowrank_from_dense(dense, rank=5, check_shrink=False)
    x = torch.randn(4, 6)
    torch.testing.assert_close(low(x), dense(x), atol=1e-5, rtol=1e-5)
    assert low.factors_from == "svd"
    conv = nn.Conv2d(6, 4, 1)
    low_conv = lowrank_from_dense(conv, rank=4, check_shrink=False)
    y = torch.randn(2, 6, 3, 5)
    torch.testing.assert_close(low_conv(y), conv(y), atol=1e-5, rtol=1e-5)


def test_energy_rank_and_shrink_check():
    torch.manual_seed(4)
    u, v = torch.randn(40, 2), torch.randn(2, 30)
    dense = nn.Linear(30, 40, bias=False)
    dense.weight.data.copy_(u @ v + 1e-4 * torch.randn(40, 30))
    low = lowrank_from_dense(dense, "energy:0.95")
    assert low.rank <= 2
    with pytest.raises(ValueError, match="does not shrink"):
        lowrank_from_dense(dense, rank=20)
    with pytest.raises(ValueError, match="does not shrink"):
        LowRankLinear(4, 4, 2)
    with pytest.raises(ValueError, match="energy"):
        lowrank_from_dense(dense, "mass:0.9")


def test_closed_form_parameter_counts():
    assert count_params(LowRankLinear(30, 20, 3, bias=False)) == 3 * (30 + 20)
    assert count_params(LowRankConv1x1(32, 16, 4)) == 4 * (32 + 16)
    dsc = SeparableConv2d(12, 20)
    assert count_params(dsc) == 9 * 12 + 12 * 20 + 2 * 12  # depthwise, pointwise, BN affine


def test_layers_give_finite_gradients():
    torch.manual_seed(5)
    check_finite_gradients(RSKBlock(4, 8, stride=2, sk_on="both", separable=True, pw_rank="auto"),
                           torch.randn(2, 4, 12, 16))
