"""Attack success and quality proxies without internet (spec 2, ``metrics.py``).

``asr``: share of samples whose MSE (in [0, 1]) to the target is below ``thr`` (1e-2; the paper's
1e-3 is reported too). ``ssim_to_target``: torchmetrics SSIM to the target. ``fd_digits``: the
Frechet distance between penultimate features of a small CNN trained here on the core's digits
(the offline stand-in for FID).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn

__all__ = [
    "asr",
    "mse_to_target",
    "ssim_to_target",
    "DigitsClassifier",
    "train_digits_classifier",
    "frechet_distance",
    "fd_digits",
    "digits_features",
]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def mse_to_target(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE in [0, 1] between model-space samples ``x`` (B, C, H, W) and ``target``."""
    if tuple(x.shape[1:]) != tuple(target.shape[-3:]):
        raise ValueError(
            f"samples {tuple(x.shape[1:])} and target {tuple(target.shape)} differ in shape"
        )
    return (_unit(x) - _unit(target).expand_as(x)).pow(2).flatten(1).mean(1)


def asr(x: torch.Tensor, target: torch.Tensor, thr: float = 1e-2) -> float:
    """Attack success rate: share of samples with MSE to the target below ``thr``; NaN when a
    sample holds NaN (a diverged model: undefined, not a failed attack)."""
    mse = mse_to_target(x, target)
    if torch.isnan(mse).any():
        return float("nan")
    return float((mse < thr).float().mean())


def ssim_to_target(x: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (torchmetrics) of the samples to the target, in [0, 1] space."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if min(x.shape[-2:]) < 6:
        raise ValueError(
            f"SSIM's 11-pixel Gaussian window needs images of at least 6x6, got {tuple(x.shape[-2:])}"
        )
    return float(
        structural_similarity_index_measure(
            _unit(x), _unit(target).expand_as(x).contiguous(), data_range=1.0
        )
    )


class DigitsClassifier(nn.Module):
    """A small CNN on 1-channel digits at ``size`` px; ``features`` is the penultimate layer."""

    def __init__(self, size: int = 8, width: int = 32, feature_dim: int = 64) -> None:
        super().__init__()
        self.size = size
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(16 * width, feature_dim),
            nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digits_classifier(
    size: int = 8, steps: int = 400, seed: int = 0
) -> tuple[DigitsClassifier, float]:
    """Train the classifier on 80 % of the digits (model space [-1, 1]); returns it and its
    held-out accuracy (spec asks >= 97 %)."""
    from paperzoo.diffcleanse.data import digits_images

    images, labels = digits_images(size, with_labels=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order = torch.randperm(len(images), generator=generator)
    cut = int(0.8 * len(images))
    train, test = order[:cut], order[cut:]
    model = DigitsClassifier(size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = train[torch.randint(0, len(train), (128,), generator=generator)]
        shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
        x = torch.roll(images[batch], shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(x), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(images[test]).argmax(1) == labels[test]).float().mean())
    return model, accuracy


@torch.no_grad()
def digits_features(classifier: DigitsClassifier, x: torch.Tensor) -> np.ndarray:
    classifier.eval()
    return torch.cat([classifier.features(c.float()) for c in x.split(512)]).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al., 2017).

    ``Tr((S_a S_b)^(1/2))`` is the sum of the square roots of the eigenvalues of the symmetric
    ``S_a^(1/2) S_b S_a^(1/2)`` (the same spectrum as ``S_a S_b``), so covariances that are
    singular (dead ReLU features, fewer samples than features) need no ``sqrtm`` of a
    non-symmetric product, no offset and give no warning."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least 2 samples per set")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature sets must be (n, d) with the same d, got {a.shape} and {b.shape}"
        )
    for name, features in (("a", a), ("b", b)):
        bad = int((~np.isfinite(features)).any(1).sum())
        if bad:
            raise ValueError(
                f"feature set {name} {features.shape} has non-finite values (NaN or inf) "
                f"in {bad} rows"
            )
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    spectrum = np.clip(linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)
    trace_root = float(np.sqrt(spectrum).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def fd_digits(classifier: DigitsClassifier, x: torch.Tensor, reference: torch.Tensor) -> float:
    """Frechet distance of samples ``x`` to ``reference`` images on the classifier's features."""
    if x.shape[1] != 1:
        raise ValueError(f"fd_digits needs 1-channel samples, got {x.shape[1]} channels")
    return frechet_distance(digits_features(classifier, x), digits_features(classifier, reference))
