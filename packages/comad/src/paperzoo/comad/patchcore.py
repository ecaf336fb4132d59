"""PatchCore (Roth et al., CVPR 2022): a memory bank of locally aware patch features reduced by
the greedy coreset, nearest-neighbour patch scores, image score = max patch score.

Follows the conventions of anomalib's reference implementation (3x3 neighbourhood averaging,
coreset ratio 0.1, map upsampled and Gaussian-blurred with sigma 4), on any featuriser: the
paper's WideResNet-50 layer2 + layer3 or, offline, the Stage-A featuriser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from paperzoo.comad.coreset import greedy_coreset


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance of each query row to its nearest bank row (``torch.cdist``, chunked)."""
    return (
        torch.cat(
            [
                torch.cdist(queries[i : i + chunk], bank).amin(1)
                for i in range(0, len(queries), chunk)
            ]
        )
        if len(queries)
        else queries.new_zeros(0)
    )


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, H, W)`` maps (kernel radius 4 sigma, reflect padding)."""
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    out = maps.unsqueeze(1)
    pad = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    if pad < radius:
        kernel = kernel[radius - pad : radius + pad + 1]
        kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(out, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    return out.squeeze(1)


class PatchCore:
    """Memory bank + nearest-neighbour patch scores on any featuriser.

    Args:
        featuriser: ``(B, 3, S, S) -> (B, D, h, w)``.
        coreset_ratio: share of all training patches kept in the bank (0.1; 1.0 keeps all).
        neighbourhood: the local-aware averaging window (3).
        blur_sigma: Gaussian sigma of the anomaly map at 224 px (4), scaled with the size.
    """

    def __init__(
        self,
        featuriser,
        coreset_ratio: float = 0.1,
        proj_dim: int = 128,
        neighbourhood: int = 3,
        blur_sigma: float = 4.0,
        seed: int = 0,
        batch_size: int = 16,
        chunk: int = 4096,
    ) -> None:
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"patchcore coreset_ratio must lie in (0, 1], got {coreset_ratio}")
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"patchcore neighbourhood must be odd and >= 1, got {neighbourhood}")
        self.featuriser, self.coreset_ratio, self.proj_dim = featuriser, coreset_ratio, proj_dim
        self.neighbourhood, self.blur_sigma, self.seed = neighbourhood, blur_sigma, seed
        self.batch_size, self.chunk = batch_size, chunk
        self.bank: torch.Tensor | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features ``(B, h, w, D)``."""
        out = []
        r = self.neighbourhood // 2
        for i in range(0, images.shape[0], self.batch_size):
            features = self.featuriser(images[i : i + self.batch_size].float()).float()
            if r:
                features = F.avg_pool2d(
                    F.pad(features, (r, r, r, r), mode="replicate"), self.neighbourhood, stride=1
                )
            out.append(features.permute(0, 2, 3, 1))
        return torch.cat(out)

    def fit(self, images: torch.Tensor) -> PatchCore:
        patches = self.embed(images).reshape(-1, self._dim(images))
        if self.coreset_ratio >= 1:
            self.bank = patches.clone()
        else:
            self.bank = patches[
                greedy_coreset(
                    patches, ratio=self.coreset_ratio, proj_dim=self.proj_dim, seed=self.seed
                )
            ].clone()
        return self

    def _dim(self, images: torch.Tensor) -> int:
        return self.embed(images[:1]).shape[-1]

    def score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image scores ``(B,)`` (max patch distance) and anomaly maps ``(B, S, S)``."""
        if self.bank is None:
            raise ValueError("PatchCore is not fitted; call fit(train_images) first")
        embedded = self.embed(images)
        b, h, w, d = embedded.shape
        if d != self.bank.shape[1]:
            raise ValueError(f"features have {d} channels, the memory bank {self.bank.shape[1]}")
        patch = nearest_distances(
            embedded.reshape(-1, d), self.bank.to(embedded.device), self.chunk
        ).view(b, h, w)
        maps = F.interpolate(
            patch.unsqueeze(1), size=images.shape[-2:], mode="bilinear", align_corners=False
        )
        maps = gaussian_blur(maps.squeeze(1), self.blur_sigma * images.shape[-1] / 224)
        return patch.flatten(1).amax(1), maps

    def state(self) -> dict[str, torch.Tensor]:
        if self.bank is None:
            raise ValueError("PatchCore is not fitted")
        return {"bank": self.bank.clone()}

    def load_state(self, state: dict[str, torch.Tensor]) -> PatchCore:
        self.bank = state["bank"].float()
        return self
