"""CRF refinement of the component similarity maps (paper section 3.1, step 4).

Unary ``-log softmax(maps / temperature)``; a Gaussian kernel (``sxy`` 1, weight 3) and a
bilateral kernel (``sxy`` 67, ``srgb`` 3, weight 4) on the 8-bit image; Potts compatibility;
2 mean-field iterations. Pixel constants are given at 224 px and scaled to the image size
(pitfall 5).

- :class:`LocalCRF` (default): the same mean-field updates in torch, at a quarter of the resolution, with
  the kernels truncated to a ``(2r+1)^2`` window and row-normalised (the dense CRF's kernel
  normalisation); vectorised over pixels, O(pixels x window) instead of O(pixels^2) (pitfall 11).
- :class:`DenseCRF`: the fully connected CRF of Kraehenbuehl and Koltun through ``pydensecrf2``
  (optional extra ``paperzoo-comad[densecrf]``).
- :class:`NoCRF`: the softmax alone (for ablations and the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CRFS = ("local", "dense", "none")


@dataclass
class CRFParams:
    """Kernel parameters at the 224-px reference size (paper's official values)."""

    gaussian_sxy: float = 1.0
    gaussian_weight: float = 3.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0
    bilateral_weight: float = 4.0
    iterations: int = 2
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"CRF iterations must be >= 0, got {self.iterations}")
        if self.temperature <= 0:
            raise ValueError(f"CRF temperature must be positive, got {self.temperature}")
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CRF {name} must be positive, got {getattr(self, name)}")


def _check(maps: torch.Tensor, images: torch.Tensor) -> None:
    if (
        maps.dim() != 4
        or images.dim() != 4
        or maps.shape[0] != images.shape[0]
        or maps.shape[-2:] != images.shape[-2:]
    ):
        raise ValueError(
            f"CRF needs maps (B, K, H, W) and images (B, 3, H, W) of one size, got "
            f"{tuple(maps.shape)} and {tuple(images.shape)}"
        )


class NoCRF:
    """``softmax(maps / temperature)`` without pairwise terms."""

    name = "none"

    def __init__(self, params: CRFParams | None = None) -> None:
        self.params = params or CRFParams()

    def __call__(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        _check(maps, images)
        return torch.softmax(maps / self.params.temperature, dim=1)


class LocalCRF:
    """Windowed mean-field CRF in torch at reduced resolution (see the module docstring)."""

    name = "local"

    def __init__(
        self, params: CRFParams | None = None, radius: int = 3, downsample: int = 4, chunk: int = 8
    ) -> None:
        if radius < 1:
            raise ValueError(f"LocalCRF radius must be >= 1, got {radius}")
        if downsample < 1:
            raise ValueError(f"LocalCRF downsample must be >= 1, got {downsample}")
        self.params = params or CRFParams()
        self.radius, self.downsample, self.chunk = radius, downsample, max(1, chunk)

    def _offsets(self) -> list[tuple[int, int]]:
        r = self.radius
        return [
            (dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)
        ]

    @staticmethod
    def _shifted(padded: torch.Tensor, r: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
        return padded[..., r + dy : r + dy + h, r + dx : r + dx + w]

    def _kernel(self, images: torch.Tensor, size: int) -> torch.Tensor:
        """Row-normalised pairwise weights ``(B, window - 1, H, W)``, one plane per offset."""
        p, r = self.params, self.radius
        scale = size / 224.0  # pixel constants of the paper are for 224-px images
        rgb = images * 255.0
        b, _, h, w = rgb.shape
        padded = F.pad(rgb, (r, r, r, r), mode="replicate")
        gaussian, bilateral = [], []
        for dy, dx in self._offsets():
            d2 = float((dy * self.downsample) ** 2 + (dx * self.downsample) ** 2)
            colour2 = (self._shifted(padded, r, dy, dx, h, w) - rgb).pow(2).sum(1)
            gaussian.append(
                torch.full_like(colour2, -d2 / (2 * (p.gaussian_sxy * scale) ** 2)).exp()
            )
            bilateral.append(
                torch.exp(
                    -d2 / (2 * (p.bilateral_sxy * scale) ** 2) - colour2 / (2 * p.bilateral_srgb**2)
                )
            )
        gaussian, bilateral = torch.stack(gaussian, 1), torch.stack(bilateral, 1)
        gaussian = gaussian / gaussian.sum(1, keepdim=True).clamp_min(1e-12)
        bilateral = bilateral / bilateral.sum(1, keepdim=True).clamp_min(1e-12)
        return p.gaussian_weight * gaussian + p.bilateral_weight * bilateral

    def _refine(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        size = images.shape[-1]
        if self.downsample > 1:
            maps_small = F.avg_pool2d(maps, self.downsample, ceil_mode=True)
            images_small = F.avg_pool2d(images, self.downsample, ceil_mode=True)
        else:
            maps_small, images_small = maps, images
        h, w = maps_small.shape[-2:]
        logits = torch.log_softmax(maps_small / self.params.temperature, dim=1)  # -unary
        kernel = self._kernel(images_small, size)
        q = logits.exp()
        r = self.radius
        for _ in range(self.params.iterations):
            padded = F.pad(q, (r, r, r, r), mode="replicate")
            message = torch.zeros_like(q)
            for o, (dy, dx) in enumerate(self._offsets()):
                message.addcmul_(kernel[:, o : o + 1], self._shifted(padded, r, dy, dx, h, w))
            q = torch.softmax(logits + message, dim=1)
        if self.downsample > 1:
            q = F.interpolate(q, size=maps.shape[-2:], mode="bilinear", align_corners=True)
        return q

    @torch.no_grad()
    def __call__(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        _check(maps, images)
        return torch.cat(
            [
                self._refine(maps[i : i + self.chunk].float(), images[i : i + self.chunk].float())
                for i in range(0, maps.shape[0], self.chunk)
            ]
        )


class DenseCRF:
    """The fully connected CRF through ``pydensecrf2`` (``pip install paperzoo-comad[densecrf]``)."""

    name = "dense"

    def __init__(self, params: CRFParams | None = None) -> None:
        try:
            import pydensecrf.densecrf  # noqa: F401
        except ImportError as error:
            raise ValueError(
                "crf 'dense' needs pydensecrf2: pip install 'paperzoo-comad[densecrf]'; "
                "or use crf 'local'"
            ) from error
        self.params = params or CRFParams()

    @torch.no_grad()
    def __call__(self, maps: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import pydensecrf.densecrf as dcrf

        _check(maps, images)
        p = self.params
        b, k, h, w = maps.shape
        scale = w / 224.0
        probs = torch.softmax(maps.float() / p.temperature, dim=1).cpu().numpy()
        rgb = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        out = np.empty_like(probs)
        for i in range(b):
            crf = dcrf.DenseCRF2D(w, h, k)
            crf.setUnaryEnergy(
                np.ascontiguousarray(-np.log(probs[i].reshape(k, -1).clip(1e-8)), dtype=np.float32)
            )
            crf.addPairwiseGaussian(sxy=p.gaussian_sxy * scale, compat=p.gaussian_weight)
            crf.addPairwiseBilateral(
                sxy=p.bilateral_sxy * scale,
                srgb=p.bilateral_srgb,
                rgbim=np.ascontiguousarray(rgb[i]),
                compat=p.bilateral_weight,
            )
            out[i] = np.asarray(crf.inference(p.iterations)).reshape(k, h, w)
        return torch.from_numpy(out).to(maps.device)


def create_crf(name: str, params: CRFParams | None = None):
    """``local`` (default), ``dense`` (pydensecrf2) or ``none``."""
    if name == "local":
        return LocalCRF(params)
    if name == "dense":
        return DenseCRF(params)
    if name == "none":
        return NoCRF(params)
    raise ValueError(f"unknown crf {name!r}; choose from {', '.join(CRFS)}")
