"""The invisible traces TriPINet reads beside the RGB image (paper abstract: "noise" and
"frequency" streams; filters reconstructed from RGB-N and MVSS-Net, spec section 1).

Every filter takes raw pixel values: the input is RGB in [0, 1] and is scaled to 0-255 inside.

- :class:`SRMFilter`: three fixed zero-sum 5x5 rich-model kernels, a buffer, never a parameter.
- :class:`BayarConv2d`: a constrained convolution (centre -1, the other weights sum to +1),
  imposed by a ``torch.nn.utils.parametrize`` parametrisation so it holds after every step.
- :class:`BlockDCT`, :class:`DCTHighPass`, :class:`FFTHighPass`: the frequency inputs.

The traces are small differences of 0-255 values (a residual of one grey level beside pixels of
200), so every filter computes in float32 even under mixed precision (``--precision bf16-mixed``
or ``16-mixed``): in bfloat16 a pixel of 200 is rounded by up to half a grey level, which measured
a 4 % mean error of the SRM residuals and 3 % of the block-DCT input on generated forgeries. The
output is returned in the input's dtype, so the encoders that follow still run under autocast.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

FREQS = ("block_dct", "dct_highpass", "fft_highpass")
SRM_MODES = ("per_channel", "summed")
LUMA = (0.299, 0.587, 0.114)


def _float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float32 else x.float()


def full_precision(x: torch.Tensor):
    """A context where ``x``'s device does not autocast: what runs inside stays float32."""
    return torch.autocast(device_type=x.device.type, enabled=False)


def srm_kernels() -> torch.Tensor:
    """The three SRM kernels, ``(3, 5, 5)``, each summing to zero (spec section 1)."""
    second = torch.zeros(5, 5)
    second[1:4, 1:4] = torch.tensor([[-1.0, 2, -1], [2, -4, 2], [-1, 2, -1]]) / 4
    kv = (
        torch.tensor(
            [
                [-1.0, 2, -2, 2, -1],
                [2, -6, 8, -6, 2],
                [-2, 8, -12, 8, -2],
                [2, -6, 8, -6, 2],
                [-1, 2, -2, 2, -1],
            ]
        )
        / 12
    )
    horizontal = torch.zeros(5, 5)
    horizontal[2, 1:4] = torch.tensor([1.0, -2, 1]) / 2
    return torch.stack([second, kv, horizontal])


def _check_image(x: torch.Tensor, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(
            f"{who} takes RGB images (batch, 3, height, width), got shape {tuple(x.shape)}"
        )


class SRMFilter(nn.Module):
    """Fixed SRM residuals of each colour channel (9 outputs) or of their sum (``summed``: 3)."""

    def __init__(self, mode: str = "per_channel") -> None:
        super().__init__()
        if mode not in SRM_MODES:
            raise ValueError(f"unknown srm mode {mode!r}; choose from {', '.join(SRM_MODES)}")
        self.mode = mode
        kernels = srm_kernels().unsqueeze(1)  # (3, 1, 5, 5)
        if mode == "per_channel":
            weight = kernels.repeat(3, 1, 1, 1)  # output 3c + k: kernel k on colour c
        else:
            weight = kernels.repeat(1, 3, 1, 1)  # kernel k on the sum of the colours
        self.register_buffer("weight", weight, persistent=False)
        self.out_channels = 9 if mode == "per_channel" else 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, "SRMFilter")
        groups = 3 if self.mode == "per_channel" else 1
        with full_precision(x):
            residuals = F.conv2d(
                _float32(x) * 255.0, _float32(self.weight), padding=2, groups=groups
            )
        return residuals.to(x.dtype)


class BayarConstraint(nn.Module):
    """Parametrisation of a ``(out, in, k, k)`` weight: centre -1, off-centre weights divided by
    their sum (clamped at least ``eps`` away from 0), so they sum to +1 (Bayar & Stamm 2018)."""

    def __init__(self, kernel_size: int, eps: float = 1e-3) -> None:
        super().__init__()
        centre = torch.zeros(kernel_size, kernel_size)
        centre[kernel_size // 2, kernel_size // 2] = 1.0
        self.register_buffer("centre", centre, persistent=False)
        self.eps = eps

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        off = weight * (1.0 - self.centre)
        total = off.sum(dim=(-2, -1), keepdim=True)
        sign = torch.where(total < 0, -1.0, 1.0)
        total = sign * total.abs().clamp_min(self.eps)
        return off / total - self.centre


class BayarConv2d(nn.Module):
    """Constrained convolution on 0-255 pixels; the constraint is a parametrisation, never a write
    to ``.data`` in ``forward``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, kernel_size: int = 5) -> None:
        super().__init__()
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 3, got {kernel_size}")
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False
        )
        with torch.no_grad():  # positive start: the off-centre sum is far from 0
            self.conv.weight.uniform_(0.5, 1.5)
        parametrize.register_parametrization(self.conv, "weight", BayarConstraint(kernel_size))
        self.out_channels = out_channels

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        with full_precision(x):
            residuals = F.conv2d(_float32(x) * 255.0, _float32(conv.weight), padding=conv.padding)
        return residuals.to(x.dtype)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of RGB ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def dct_matrix(n: int, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``n x n``): ``D @ x`` transforms a column."""
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix.to(dtype)


class BlockDCT(nn.Module):
    """Orthonormal 8x8 DCT-II of the luminance on the JPEG block grid, ``log1p(|c|)``, put back
    to ``(B, 1, H, W)`` with ``pixel_shuffle`` (each block holds its 64 coefficients)."""

    def __init__(self, block: int = 8) -> None:
        super().__init__()
        d = dct_matrix(block)
        basis = torch.einsum("ui,vj->uvij", d, d).reshape(block * block, 1, block, block)
        self.register_buffer("basis", basis, persistent=False)
        self.block = block
        self.out_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, "BlockDCT")
        h, w = x.shape[-2:]
        if h % self.block or w % self.block:
            raise ValueError(f"block_dct needs crops on the {self.block}-pixel grid; got {h} x {w}")
        with full_precision(x):
            coefficients = F.conv2d(
                luminance(_float32(x)) * 255.0, _float32(self.basis), stride=self.block
            )
            spread = F.pixel_shuffle(torch.log1p(coefficients.abs()), self.block)
        return spread.to(x.dtype)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max to [0, 1]; a range under one grey level is not stretched (flat images
    stay 0 instead of amplifying rounding noise)."""
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - low) / (high - low).clamp_min(1.0)


class _GlobalHighPass(nn.Module):
    """Shared part of the two global high-pass inputs: the checked ``fraction`` and the size of
    the zeroed low-frequency box (at least one row and one column)."""

    out_channels = 3

    def __init__(self, fraction: float = 0.1) -> None:
        super().__init__()
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        self.fraction = fraction

    def box(self, h: int, w: int) -> tuple[int, int]:
        return max(1, round(self.fraction * h)), max(1, round(self.fraction * w))


@functools.lru_cache(maxsize=16)
def _dct_highpass_constants(
    h: int, w: int, rows: int, cols: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:class:`DCTHighPass`'s float32 DCT matrices and low-frequency mask for one image size on
    one device, built once (not on the CPU and copied to the device at every forward). Normal
    tensors even when first asked for under ``inference_mode`` (they may meet autograd later)."""
    with torch.inference_mode(False):
        keep = torch.ones(h, w, dtype=torch.float32, device=device)
        keep[:rows, :cols] = 0
        return dct_matrix(h).to(device), dct_matrix(w).to(device), keep


class DCTHighPass(_GlobalHighPass):
    """Global orthonormal DCT per channel, the lowest ``fraction`` of rows and columns zeroed
    (the low-frequency corner box), inverse DCT, per-image min-max (3 channels). The DCT
    matrices and the mask are kept per image size and device (the last 16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, "DCTHighPass")
        h, w = x.shape[-2:]
        pixels = _float32(x) * 255.0
        dh, dw, keep = _dct_highpass_constants(h, w, *self.box(h, w), pixels.device)
        with full_precision(x):
            coefficients = dh @ pixels @ dw.T
            filtered = _minmax(dh.T @ (coefficients * keep) @ dw)
        return filtered.to(x.dtype)


class FFTHighPass(_GlobalHighPass):
    """Centred FFT per channel with a centred low-frequency box of ``fraction`` of each side
    zeroed, inverse FFT (real part), per-image min-max (3 channels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, "FFTHighPass")
        h, w = x.shape[-2:]
        rows, cols = self.box(h, w)
        keep = torch.ones(h, w, dtype=torch.float32, device=x.device)
        top, left = h // 2 - rows // 2, w // 2 - cols // 2
        keep[top : top + rows, left : left + cols] = 0
        with full_precision(x):  # half-precision FFTs on CUDA take power-of-two sides only
            spectrum = torch.fft.fftshift(torch.fft.fft2(_float32(x) * 255.0), dim=(-2, -1))
            filtered = torch.fft.ifft2(torch.fft.ifftshift(spectrum * keep, dim=(-2, -1))).real
            filtered = _minmax(filtered)
        return filtered.to(x.dtype)


def make_freq(freq: str) -> nn.Module:
    """The frequency input by name: ``block_dct`` (default), ``dct_highpass``, ``fft_highpass``."""
    if freq == "block_dct":
        return BlockDCT()
    if freq == "dct_highpass":
        return DCTHighPass()
    if freq == "fft_highpass":
        return FFTHighPass()
    raise ValueError(f"unknown freq {freq!r}; choose from {', '.join(FREQS)}")
