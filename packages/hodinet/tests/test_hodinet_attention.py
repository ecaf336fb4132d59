"""High-order attention, HOSF, HOCF and the decoder: ranges, closed forms, shapes."""

from __future__ import annotations

import pytest
import torch

from paperzoo.hodinet.attention import HOCF, HOSF, HighOrderAttention
from paperzoo.hodinet.decoder import CascadedPyramidDecoder, PyramidBlock


def test_attention_is_in_open_unit_interval_and_shaped_like_input():
    torch.manual_seed(0)
    hoa = HighOrderAttention(16, order=3)
    x = torch.randn(2, 16, 8, 8)
    a = hoa(x)
    assert a.shape == x.shape
    assert (a > 0).all() and (a < 1).all()


def test_order_one_equals_gated_closed_form():
    torch.manual_seed(1)
    hoa = HighOrderAttention(8, order=1)
    x = torch.randn(3, 8, 5, 5)
    w = hoa.projections[0].weight[:, :, 0, 0]  # (C/4, C)
    v, b = hoa.outputs[0].weight[:, :, 0, 0], hoa.outputs[0].bias  # (C, C/4), (C,)
    z = torch.relu(torch.einsum("oc,bchw->bohw", w, x))
    expected = torch.sigmoid(torch.einsum("co,bohw->bchw", v, z) + b[None, :, None, None])
    torch.testing.assert_close(hoa(x), expected)


def test_order_three_term_is_the_explicit_triple_product():
    torch.manual_seed(2)
    hoa = HighOrderAttention(8, order=3)
    x = torch.randn(2, 8, 4, 4)
    weight = hoa.projections[2].weight[:, :, 0, 0]  # (3 * C/4, C)
    w1, w2, w3 = weight.split(hoa.hidden)
    project = lambda w: torch.einsum("oc,bchw->bohw", w, x)  # noqa: E731
    expected = torch.relu(project(w1) * project(w2) * project(w3))
    torch.testing.assert_close(hoa.order_terms(x)[2], expected)
    assert len(hoa.order_terms(x)) == 3


def test_order_four_is_finite_on_large_inputs():
    torch.manual_seed(3)
    hoa = HighOrderAttention(32, order=4)
    a = hoa(50 * torch.randn(2, 32, 16, 16))
    assert torch.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()


def test_order_below_one_is_refused():
    with pytest.raises(ValueError, match="order"):
        HighOrderAttention(8, order=0)


@pytest.mark.parametrize("joint", ["add", "concat"])
def test_hosf_map_and_hocf_vector_in_range(joint):
    torch.manual_seed(4)
    r, d = torch.randn(2, 16, 8, 8), torch.randn(2, 16, 8, 8)
    hosf, hocf = HOSF(16, 3, joint), HOCF(16, 3, joint)
    h = hosf.high_order_feature(r, d)
    s = hosf.weights(h)
    assert s.shape == (2, 1, 8, 8) and (s > 0).all() and (s < 1).all()
    c = hocf.weights(hocf.high_order_feature(r, d))
    assert c.shape == (2, 16, 1, 1) and (c > 0).all() and (c < 1).all()
    assert hosf(r, d).shape == r.shape and hocf(r, d).shape == r.shape


def test_unknown_joint_is_refused():
    with pytest.raises(ValueError, match="joint"):
        HOSF(8, 3, "mul")


@pytest.mark.parametrize("dense", [True, False])
def test_decoder_side_outputs_fine_to_coarse(dense):
    decoder = CascadedPyramidDecoder(8, 4, (1, 2), dense)
    feats = [torch.randn(2, 8, s, s) for s in (16, 8, 4, 2)]
    side = decoder(feats)
    assert [tuple(s.shape) for s in side] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2)]


def test_dense_cascade_uses_every_coarser_level():
    torch.manual_seed(5)
    feats = [torch.randn(1, 8, s, s) for s in (16, 8, 4, 2)]
    dense, chain = CascadedPyramidDecoder(8, 4, (1,), True), CascadedPyramidDecoder(8, 4, (1,), False)
    chain.load_state_dict(dense.state_dict())
    dense.eval(), chain.eval()
    a, b = dense(feats), chain(feats)
    torch.testing.assert_close(a[3], b[3])
    torch.testing.assert_close(a[2], b[2])  # level 3 sees only level 4 either way
    assert not torch.allclose(a[0], b[0])


def test_pyramid_block_refuses_bad_dilations():
    with pytest.raises(ValueError, match="dilations"):
        PyramidBlock(8, (0, 2))
