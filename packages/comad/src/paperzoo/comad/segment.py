"""Stage A: unsupervised component segmentation (paper section 3.1).

1. A frozen featuriser gives a patch grid; 2. per training image a greedy coreset of 1 % of its
patches, concatenated and L2-normalised, is clustered once by k-means: the shared centres define
"component k" in every image (pitfall 2); 3. cosine similarity of each patch to each centre,
minus the map's spatial mean, clamped at 0, upsampled; 4. CRF refinement, ``G_k = 128 * Q_k``;
5. background and component filtering (Otsu, corner squares, box blur).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paperzoo.comad.coreset import greedy_coreset
from paperzoo.comad.crf import NoCRF

log = logging.getLogger(__name__)
FILTER_MODES = ("vote", "first")
GREY_SCALE = 128.0  # the official grey level of a fully confident component


def otsu_thresholds(
    values: torch.Tensor, bins: int = 256, low: float = 0.0, high: float = GREY_SCALE
) -> torch.Tensor:
    """Otsu's threshold of each row of ``values`` (M, P), from a ``bins``-bin histogram on
    ``[low, high]``; returns the upper edge of the last bin of the lower class (M,)."""
    m = values.shape[0]
    width = (high - low) / bins
    index = ((values - low) / width).long().clamp(0, bins - 1)
    hist = torch.zeros(m, bins, dtype=torch.float64, device=values.device)
    hist.scatter_add_(1, index, torch.ones_like(index, dtype=torch.float64))
    centres = low + width * (torch.arange(bins, dtype=torch.float64, device=values.device) + 0.5)
    weight0 = hist.cumsum(1)
    weight1 = hist.sum(1, keepdim=True) - weight0
    mass0 = (hist * centres).cumsum(1)
    mass1 = (hist * centres).sum(1, keepdim=True) - mass0
    mean0 = mass0 / weight0.clamp_min(1e-12)
    mean1 = mass1 / weight1.clamp_min(1e-12)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    between[:, -1] = -1
    cut = between.argmax(1)
    return (low + width * (cut + 1)).float()


@dataclass(frozen=True)
class FilterGeometry:
    """Border, corner square, blur kernel and blob floor derived from the image size (pitfall 5;
    the paper's constants are 10, 20 and 11 px at 224 px)."""

    border: int
    corner: int
    blur: int

    @classmethod
    def for_size(cls, size: int) -> FilterGeometry:
        blur = max(1, round(11 * size / 224))
        return cls(
            border=max(1, round(10 * size / 224)),
            corner=max(1, round(20 * size / 224)),
            blur=blur if blur % 2 else blur + 1,
        )


def filter_statistics(
    grey: torch.Tensor, peak_level: float = 64.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and component: the box-blurred peak of ``G_k`` and the number of corner squares
    that the Otsu-binarised map covers (more than half of the square is foreground).

    ``grey`` is ``(N, K, H, W)`` on the ``128 * Q`` scale (pitfall 4). Returns ``peak (N, K)``
    and ``corners (N, K)``.
    """
    n, k, h, w = grey.shape
    geo = FilterGeometry.for_size(w)
    interior = grey[..., geo.border : h - geo.border, geo.border : w - geo.border].reshape(
        n * k, -1
    )
    thresholds = otsu_thresholds(interior).view(n, k, 1, 1)
    binary = (grey > thresholds).float()
    c = geo.corner
    squares = torch.stack(
        [binary[..., :c, :c], binary[..., :c, -c:], binary[..., -c:, :c], binary[..., -c:, -c:]],
        dim=2,
    )
    corners = (squares.mean(dim=(-1, -2)) > 0.5).sum(2)
    pad = geo.blur // 2
    blurred = F.avg_pool2d(
        F.pad(grey.reshape(n * k, 1, h, w), (pad,) * 4, mode="replicate"), geo.blur, stride=1
    )
    peak = blurred.view(n, k, -1).amax(-1)
    return peak, corners


def keep_components(
    peak: torch.Tensor,
    corners: torch.Tensor,
    mode: str = "vote",
    peak_level: float = 64.0,
    max_corners: int = 3,
    min_presence: float = 0.25,
) -> list[int]:
    """The component filter of step 5: keep k iff its blurred peak exceeds ``peak_level`` and it
    covers fewer than ``max_corners`` corners.

    ``mode="first"`` (official) decides on the first image; ``"vote"`` [reconstructed] keeps k
    when a majority of images agree on "not background" (corners) and at least ``min_presence``
    of them show it (peak): components that appear in only some good images, such as one of two
    liquid colours, survive. Nothing kept: the highest-peak non-corner component, with a warning.
    """
    if mode not in FILTER_MODES:
        raise ValueError(f"unknown filter_mode {mode!r}; choose from {', '.join(FILTER_MODES)}")
    if mode == "first":
        peak, corners = peak[:1], corners[:1]
    present = (peak > peak_level).float().mean(0)
    foreground = (corners < max_corners).float().mean(0)
    if mode == "first":
        keep = (present > 0.5) & (foreground > 0.5)
    else:
        keep = (present >= min_presence) & (foreground > 0.5)
    kept = torch.nonzero(keep).flatten().tolist()
    if not kept:
        candidates = torch.nonzero(foreground > 0.5).flatten()
        if len(candidates) == 0:
            candidates = torch.arange(peak.shape[1])
        best = candidates[peak.mean(0)[candidates].argmax()]
        kept = [int(best)]
        log.warning(
            "component filter kept nothing (flat featuriser?); falling back to component %d "
            "with the highest peak",
            kept[0],
        )
    return kept


class ComponentSegmenter:
    """Stage A on any featuriser: fit shared k-means centres, then ``G_k`` maps per image.

    Args:
        featuriser: ``(B, 3, S, S) -> (B, D, S/8, S/8)``.
        crf: a CRF from :mod:`paperzoo.comad.crf` (``LocalCRF`` by default in the model).
        n_components: K of k-means (paper 5).
        coreset_ratio: share of each training image's patches that enter the k-means bank (1 %).
        filter_mode: ``"vote"`` over ``vote_images`` training images or ``"first"``.
    """

    def __init__(
        self,
        featuriser,
        crf=None,
        n_components: int = 5,
        coreset_ratio: float = 0.01,
        proj_dim: int = 128,
        filter_mode: str = "vote",
        vote_images: int = 16,
        min_presence: float = 0.25,
        seed: int = 0,
        batch_size: int = 16,
    ) -> None:
        if n_components < 2:
            raise ValueError(f"n_components (K) must be >= 2, got {n_components}")
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"coreset_ratio must lie in (0, 1], got {coreset_ratio}")
        if filter_mode not in FILTER_MODES:
            raise ValueError(
                f"unknown filter_mode {filter_mode!r}; choose from {', '.join(FILTER_MODES)}"
            )
        if vote_images < 1:
            raise ValueError(f"vote_images must be >= 1, got {vote_images}")
        if not 0 < min_presence <= 1:
            raise ValueError(f"min_presence must lie in (0, 1], got {min_presence}")
        self.featuriser = featuriser
        self.crf = crf if crf is not None else NoCRF()
        self.n_components, self.coreset_ratio, self.proj_dim = n_components, coreset_ratio, proj_dim
        self.filter_mode, self.vote_images, self.min_presence = (
            filter_mode,
            vote_images,
            min_presence,
        )
        self.seed, self.batch_size = seed, batch_size
        self.centres: torch.Tensor | None = None
        self.kept: list[int] = []

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                F.normalize(self.featuriser(images[i : i + self.batch_size]).float(), dim=1)
                for i in range(0, images.shape[0], self.batch_size)
            ]
        )

    def fit(self, images: torch.Tensor) -> ComponentSegmenter:
        """Cluster the coreset bank of ``images`` (N, 3, S, S) and choose the kept components."""
        from sklearn.cluster import KMeans

        features = self._features(images)
        n, d = features.shape[:2]
        patches = features.flatten(2).transpose(1, 2)  # (N, P, D)
        picks = [
            patches[
                i,
                greedy_coreset(
                    patches[i], ratio=self.coreset_ratio, proj_dim=self.proj_dim, seed=self.seed
                ),
            ]
            for i in range(n)
        ]
        bank = F.normalize(torch.cat(picks), dim=1).double().numpy()
        if bank.shape[0] < self.n_components:
            raise ValueError(
                f"the k-means bank has {bank.shape[0]} patches, fewer than "
                f"n_components={self.n_components}; raise coreset_ratio or add images"
            )
        kmeans = KMeans(self.n_components, init="k-means++", n_init=10, random_state=self.seed).fit(
            bank
        )
        self.centres = F.normalize(torch.from_numpy(kmeans.cluster_centers_).float(), dim=1)
        grey = self.grey_maps(images[: self.vote_images])
        peak, corners = filter_statistics(grey)
        self.kept = keep_components(peak, corners, self.filter_mode, min_presence=self.min_presence)
        return self

    def _require_fit(self) -> torch.Tensor:
        if self.centres is None:
            raise ValueError("the segmenter is not fitted; call fit(train_images) first")
        return self.centres

    def similarity_maps(
        self, images: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Step 3: ``(B, K, S, S)`` cosine similarity to each centre, minus its spatial mean,
        clamped at 0, bilinearly upsampled (align_corners)."""
        centres = self._require_fit()
        features = self._features(images) if features is None else features
        sim = torch.einsum("bdhw,kd->bkhw", features, centres.to(features.device))
        sim = (sim - sim.mean(dim=(-1, -2), keepdim=True)).clamp_min(0)
        return F.interpolate(sim, size=images.shape[-2:], mode="bilinear", align_corners=True)

    def grey_maps(self, images: torch.Tensor) -> torch.Tensor:
        """Step 4: ``G = 128 * Q`` for every component, ``(B, K, S, S)`` floats."""
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            batch = images[i : i + self.batch_size].float()
            out.append(GREY_SCALE * self.crf(self.similarity_maps(batch), batch))
        return torch.cat(out)

    def labels(self, grey: torch.Tensor) -> torch.Tensor:
        """Hard component labels ``(B, S, S)``: the most probable component per pixel."""
        return grey.argmax(1)

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "centres": self._require_fit().clone(),
            "kept": torch.tensor(self.kept, dtype=torch.long),
        }

    def load_state(self, state: dict[str, torch.Tensor]) -> ComponentSegmenter:
        if state["centres"].shape[0] != self.n_components:
            raise ValueError(
                f"stored centres have K={state['centres'].shape[0]}, the segmenter K={self.n_components}"
            )
        self.centres = state["centres"].float()
        self.kept = [int(k) for k in state["kept"]]
        return self


def coreset_patches_per_image(n_patches: int, ratio: float) -> int:
    """``ceil(ratio * patches)``: 8 of 784 patches at the paper's 1 %."""
    return max(1, math.ceil(ratio * n_patches - 1e-9))
