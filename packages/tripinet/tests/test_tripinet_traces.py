"""SRM kernels fixed and zero-sum, the Bayar constraint after an optimiser step, the DCT inputs."""

from __future__ import annotations

import pytest
import torch

from paperzoo.tripinet.traces import (
    BayarConv2d,
    BlockDCT,
    DCTHighPass,
    FFTHighPass,
    SRMFilter,
    dct_matrix,
    make_freq,
    srm_kernels,
)


def test_srm_kernels_sum_to_zero_and_match_the_spec():
    kernels = srm_kernels()
    assert kernels.shape == (3, 5, 5)
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.zeros(3), atol=1e-6)
    assert kernels[0, 2, 2] == pytest.approx(-1.0) and kernels[0, 0].abs().sum() == 0  # 3x3 padded
    assert kernels[1, 2, 2] == pytest.approx(-1.0) and kernels[1, 0, 0] == pytest.approx(-1 / 12)
    assert torch.equal(kernels[2, 2, 1:4], torch.tensor([0.5, -1.0, 0.5]))


def test_srm_is_a_fixed_buffer_unchanged_by_training():
    srm = SRMFilter()
    assert list(srm.parameters()) == [] and "weight" in dict(srm.named_buffers())
    conv = torch.nn.Conv2d(9, 1, 1)
    optimizer = torch.optim.Adam(conv.parameters(), lr=0.1)
    before = srm.weight.clone()
    loss = conv(srm(torch.rand(2, 3, 16, 16))).pow(2).mean()
    loss.backward()
    optimizer.step()
    assert torch.equal(srm.weight, before)
    assert SRMFilter("summed")(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_flat_image_gives_zero_srm_and_block_dct_ac():
    flat = torch.full((2, 3, 32, 32), 0.4)
    residual = SRMFilter()(flat)
    assert residual.shape == (2, 9, 32, 32)
    assert residual[..., 2:-2, 2:-2].abs().max() < 1e-3  # inside the zero padding
    coeffs = BlockDCT()(flat)
    assert coeffs.shape == (2, 1, 32, 32)
    ac = coeffs.clone()
    ac[..., ::8, ::8] = 0  # each block's DC sits at its top-left after pixel_shuffle
    assert ac.abs().max() < 1e-3
    assert coeffs[..., ::8, ::8].min() > 1.0


def test_dct_matrix_is_orthonormal_and_block_dct_needs_the_grid():
    d = dct_matrix(8)
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)
    with pytest.raises(ValueError, match="8-pixel grid"):
        BlockDCT()(torch.rand(1, 3, 36, 32))


def test_bayar_constraint_holds_after_an_adam_step():
    torch.manual_seed(0)
    bayar = BayarConv2d(3, 3, 5)
    optimizer = torch.optim.Adam(bayar.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        bayar(torch.rand(2, 3, 16, 16)).pow(2).mean().backward()
        optimizer.step()
    weight = bayar.weight.detach()
    assert torch.allclose(weight[..., 2, 2], torch.full((3, 3), -1.0))
    off = weight.sum(dim=(-2, -1)) - weight[..., 2, 2]
    assert torch.allclose(off, torch.ones(3, 3), atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        BayarConv2d(3, 3, 4)


def test_high_pass_inputs_remove_flat_content_and_are_min_max_scaled():
    x = torch.rand(2, 3, 32, 32)
    for module in (DCTHighPass(), FFTHighPass()):
        out = module(x)
        assert out.shape == (2, 3, 32, 32) and out.min() >= 0 and out.max() <= 1
        assert torch.allclose(
            module(torch.full((1, 3, 32, 32), 0.5)), torch.zeros(1, 3, 32, 32), atol=1e-4
        )
    with pytest.raises(ValueError, match="unknown freq"):
        make_freq("wavelet")


def test_dct_high_pass_builds_its_matrices_once_per_size_and_device():
    """The DCT matrices and the mask are kept per size and device (on a GPU they were built on
    the CPU and copied at every forward); the output equals the one built inline, bit for bit,
    and constants first built under ``inference_mode`` still serve a forward that needs grads."""
    from paperzoo.tripinet.traces import _dct_highpass_constants

    _dct_highpass_constants.cache_clear()
    module, x = DCTHighPass(), torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        module(x)
    module(x)
    info = _dct_highpass_constants.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    dh, dw = dct_matrix(24), dct_matrix(40)
    keep = torch.ones(24, 40)
    keep[: module.box(24, 40)[0], : module.box(24, 40)[1]] = 0
    coefficients = dh @ (x * 255.0) @ dw.T
    filtered = dh.T @ (coefficients * keep) @ dw
    low = filtered.amin(dim=(1, 2, 3), keepdim=True)
    high = filtered.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.equal(module(x), (filtered - low) / (high - low).clamp_min(1.0))
    pixels = x.clone().requires_grad_()
    module(pixels).sum().backward()  # the cached constants are not inference tensors
    assert pixels.grad is not None and torch.isfinite(pixels.grad).all()
