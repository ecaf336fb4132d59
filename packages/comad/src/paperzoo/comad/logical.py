"""Stage B: the logical model on component maps (paper section 3.2).

Per kept component k, with ``t`` = Otsu on ``G_k`` inside the border:

- masks ``G_k > m_k * t`` with the offset multiplier ``m_k`` whose training mask areas have the
  lowest coefficient of variation;
- area (mask pixels / mean training area) and colour (mean of ``(b/a)^2`` in OpenCV 8-bit Lab
  over the mask / training mean; an empty mask gives 0);
- a count histogram: 8-connected blobs above 0.1 % of the image, size classes from DBSCAN on the
  pooled training blob areas; each blob takes the majority label of its 5 nearest training blobs
  by area, DBSCAN's noise label included, and a blob whose majority is noise is not counted
  (the official code's rule; ties go to noise, then to the lower class);
- the score ``knn([area_1..m, colour_1..m]) + sum_k 0.5 / D_k^2 * knn(hist_k)``: mean Euclidean
  distance to the 5 nearest training images (leave-one-out for training images). The joint
  vector models the relations between components; there are no learned weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from paperzoo.comad.segment import FilterGeometry, otsu_thresholds

log = logging.getLogger(__name__)
OFFSETS = (1.0, 1.1, 1.2, 1.3, 1.4)


def knn_scores(train: np.ndarray, query: np.ndarray | None = None, k: int = 5) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest training rows.

    ``query=None`` scores the training rows leave-one-out (each row's own entry is excluded;
    pitfall 7). ``k`` is clipped to the training rows available.
    """
    from sklearn.neighbors import NearestNeighbors

    train = np.asarray(train, dtype=np.float64).reshape(len(train), -1)
    n = train.shape[0]
    if n < 2:
        raise ValueError(f"kNN scoring needs >= 2 training rows, got {n}")
    if query is None:
        kk = min(k, n - 1)
        distances, indices = NearestNeighbors(n_neighbors=kk + 1).fit(train).kneighbors(train)
        own = indices == np.arange(n)[:, None]
        # drop the row itself; where ties hid it, drop the farthest neighbour instead
        drop = np.where(own.any(1), own.argmax(1), kk)
        keep = np.ones_like(own)
        keep[np.arange(n), drop] = False
        return distances[keep].reshape(n, kk).mean(1)
    query = np.asarray(query, dtype=np.float64).reshape(len(query), -1)
    distances, _ = NearestNeighbors(n_neighbors=min(k, n)).fit(train).kneighbors(query)
    return distances.mean(1)


def lab_ratio(images_uint8: np.ndarray) -> np.ndarray:
    """``(b / a)^2`` per pixel from OpenCV's 8-bit Lab (``a``, ``b`` offset by 128; pitfall 3).

    ``images_uint8`` is ``(N, H, W, 3)`` RGB; returns ``(N, H, W)`` float64.
    """
    import cv2

    lab = np.stack(
        [cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2LAB) for im in images_uint8]
    )
    a = lab[..., 1].astype(np.float64)
    b = lab[..., 2].astype(np.float64)
    return (b / np.maximum(a, 1.0)) ** 2


@dataclass
class Measurements:
    """Per image and component: mask area (pixels), mean ``(b/a)^2``, blob areas, centroid."""

    area: np.ndarray  # (N, M)
    colour: np.ndarray  # (N, M)
    blobs: list[list[np.ndarray]]  # [component][image] -> blob areas (pixels)
    centroid: np.ndarray  # (N, M, 2), fractions of the image side


@dataclass
class LogicalScore:
    """The logical score and its parts for N images and the M scored components."""

    total: np.ndarray
    global_: np.ndarray
    hist: np.ndarray  # (N, M) weighted histogram terms
    area: np.ndarray  # (N, M) normalised areas
    colour: np.ndarray  # (N, M) normalised colours
    contributions: np.ndarray  # (N, M, 3): the score split into area, colour, count per component
    components: list[int] = field(default_factory=list)

    def explain(self, index: int = 0) -> dict:
        """Sub-scores of image ``index`` by component and measure, and the dominant pair."""
        parts = {}
        for j, comp in enumerate(self.components):
            a, c, h = self.contributions[index, j]
            parts[f"component_{comp}"] = {
                "area": float(a),
                "colour": float(c),
                "count": float(h),
                "area_ratio": float(self.area[index, j]),
                "colour_ratio": float(self.colour[index, j]),
            }
        j, m = np.unravel_index(
            np.argmax(self.contributions[index]), self.contributions[index].shape
        )
        return {
            "total": float(self.total[index]),
            "global": float(self.global_[index]),
            "dominant_component": int(self.components[j]),
            "dominant_measure": ("area", "colour", "count")[m],
            "parts": parts,
        }


class ComponentLogicModel:
    """Histograms of area, colour and count per component, scored by kNN (paper section 3.2).

    Args:
        offsets: candidate multipliers of the Otsu threshold (paper 1.0 to 1.4).
        blob_floor: blobs smaller than this share of the image are ignored (0.1 %).
        dbscan_eps: DBSCAN ``eps`` as a share of the mean training blob area (0.1).
        dbscan_min_samples: DBSCAN ``min_samples`` (10).
        noise_votes: the official rule (default): training blobs DBSCAN calls noise stay in the
            reference set with a noise label and vote, and a blob whose 5-NN majority is noise
            is not counted. ``False`` removes noise from the reference set instead, so that every
            blob is counted in the class of its nearest non-noise training blobs.
        n_neighbors: k of every kNN (5).
        hist_weight: the 0.5 of ``0.5 / D_k^2``.
        mask_floor: lowest threshold on the ``128 * Q`` scale [reconstructed]: a component absent
            from an image has a flat, low map whose Otsu split is noise; the floor makes it empty.
        use_position: append blob-mask centroids to the joint vector (extension; off in the paper).
    """

    def __init__(
        self,
        offsets: Sequence[float] = OFFSETS,
        blob_floor: float = 0.001,
        dbscan_eps: float = 0.1,
        dbscan_min_samples: int = 10,
        n_neighbors: int = 5,
        hist_weight: float = 0.5,
        mask_floor: float = 32.0,
        use_position: bool = False,
        noise_votes: bool = True,
    ) -> None:
        if not offsets or any(o <= 0 for o in offsets):
            raise ValueError(f"offsets must be positive multipliers, got {list(offsets)}")
        if not 0 <= blob_floor < 1:
            raise ValueError(f"blob_floor must lie in [0, 1), got {blob_floor}")
        if dbscan_eps <= 0 or dbscan_min_samples < 1:
            raise ValueError(
                f"dbscan_eps must be > 0 and dbscan_min_samples >= 1, got {dbscan_eps}, {dbscan_min_samples}"
            )
        if n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
        self.offsets = tuple(float(o) for o in offsets)
        self.blob_floor, self.dbscan_eps, self.dbscan_min_samples = (
            blob_floor,
            dbscan_eps,
            dbscan_min_samples,
        )
        self.n_neighbors, self.hist_weight, self.mask_floor = n_neighbors, hist_weight, mask_floor
        self.use_position, self.noise_votes = use_position, noise_votes
        self.fitted = False

    # -- masks and measurements ------------------------------------------------------------
    def thresholds(self, grey: torch.Tensor) -> torch.Tensor:
        """Otsu threshold of each ``G_k`` inside the border, ``(N, M)``."""
        n, m, h, w = grey.shape
        b = FilterGeometry.for_size(w).border
        centre = grey[..., b : h - b, b : w - b].reshape(n * m, -1)
        return otsu_thresholds(centre).view(n, m)

    def masks(self, grey: torch.Tensor, multipliers: Sequence[float]) -> np.ndarray:
        """Binary masks ``(N, M, H, W)``: ``G_k > max(m_k * t, mask_floor)``."""
        t = self.thresholds(grey) * torch.tensor(multipliers, dtype=torch.float32).view(1, -1)
        t = t.clamp_min(self.mask_floor)
        return (grey > t[..., None, None]).numpy()

    def measure(self, masks: np.ndarray, images_uint8: np.ndarray) -> Measurements:
        """Areas, colours, blob areas and centroids of binary masks ``(N, M, H, W)``."""
        from scipy import ndimage

        n, m, h, w = masks.shape
        area = masks.sum((2, 3)).astype(np.float64)
        ratio = lab_ratio(images_uint8)[:, None]
        colour = np.where(area > 0, (masks * ratio).sum((2, 3)) / np.maximum(area, 1), 0.0)
        ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
        cy = (masks.sum(3) * ys).sum(2) / np.maximum(area, 1)
        cx = (masks.sum(2) * xs).sum(2) / np.maximum(area, 1)
        floor = self.blob_floor * h * w
        structure = np.ones((3, 3), dtype=bool)
        blobs: list[list[np.ndarray]] = [[] for _ in range(m)]
        for j in range(m):
            for i in range(n):
                labelled, count = ndimage.label(masks[i, j], structure=structure)
                sizes = np.bincount(labelled.ravel(), minlength=count + 1)[1:].astype(np.float64)
                blobs[j].append(sizes[sizes > floor])
        return Measurements(area, colour, blobs, np.stack([cx, cy], -1))

    # -- fitting ---------------------------------------------------------------------------
    def choose_offsets(self, grey: torch.Tensor) -> list[float]:
        """Per component, the multiplier with the lowest coefficient of variation of the
        training mask areas."""
        cvs = []
        for mult in self.offsets:
            area = self.masks(grey, [mult] * grey.shape[1]).sum((2, 3)).astype(np.float64)
            mean = area.mean(0)
            cvs.append(np.where(mean > 0, area.std(0) / np.maximum(mean, 1e-12), np.inf))
        best = np.argmin(np.stack(cvs), axis=0)
        return [self.offsets[b] for b in best]

    def _size_classes(self, pooled: np.ndarray, component: int) -> tuple[np.ndarray, np.ndarray]:
        """Reference blob areas and their DBSCAN size class (-1 for noise; noise rows are left
        out when ``noise_votes`` is off); one class when DBSCAN finds none (pitfall 6)."""
        from sklearn.cluster import DBSCAN

        if pooled.size == 0:
            log.warning(
                "component %d has no training blobs; its count histogram is one empty bin",
                component,
            )
            return np.zeros(1), np.zeros(1, dtype=np.int64)
        labels = (
            DBSCAN(eps=self.dbscan_eps * pooled.mean(), min_samples=self.dbscan_min_samples)
            .fit(pooled.reshape(-1, 1))
            .labels_.astype(np.int64)
        )
        if (labels >= 0).sum() == 0:
            log.warning(
                "DBSCAN found no size class for component %d (%d blobs); one bin",
                component,
                pooled.size,
            )
            return pooled, np.zeros(pooled.size, dtype=np.int64)
        if self.noise_votes:
            return pooled, labels
        return pooled[labels >= 0], labels[labels >= 0]

    def histograms(
        self, blobs: list[np.ndarray], ref_areas: np.ndarray, ref_labels: np.ndarray
    ) -> np.ndarray:
        """Counts per size class ``(N, D)``: each blob takes the majority label of its
        ``n_neighbors`` nearest reference blobs by area; a noise majority (label -1, ties
        included) leaves the blob uncounted."""
        from sklearn.neighbors import NearestNeighbors

        n_classes = int(ref_labels.max()) + 1
        counts = np.zeros((len(blobs), n_classes))
        flat = np.concatenate(blobs) if blobs else np.zeros(0)
        if flat.size == 0:
            return counts
        owner = np.repeat(np.arange(len(blobs)), [len(b) for b in blobs])
        k = min(self.n_neighbors, len(ref_areas))
        _, idx = (
            NearestNeighbors(n_neighbors=k)
            .fit(ref_areas.reshape(-1, 1))
            .kneighbors(flat.reshape(-1, 1))
        )
        votes = np.zeros((flat.size, n_classes + 1))  # column 0 is noise
        np.add.at(votes, (np.repeat(np.arange(flat.size), k), ref_labels[idx].ravel() + 1), 1)
        label = votes.argmax(1) - 1  # argmax takes the first maximum: noise, then the lower class
        counted = label >= 0
        np.add.at(counts, (owner[counted], label[counted]), 1)
        return counts

    def fit(self, grey: torch.Tensor, images_uint8: np.ndarray) -> ComponentLogicModel:
        """Fit on the kept components' maps ``(N, M, S, S)`` of training images and the images
        ``(N, S, S, 3) uint8``."""
        if grey.shape[0] < 2:
            raise ValueError(f"the logical model needs >= 2 training images, got {grey.shape[0]}")
        self.multipliers = self.choose_offsets(grey)
        meas = self.measure(self.masks(grey, self.multipliers), images_uint8)
        self.mean_area = np.maximum(meas.area.mean(0), 1.0)
        self.mean_colour = np.maximum(meas.colour.mean(0), 1e-12)
        self.ref_areas, self.ref_labels = [], []
        for j, per_image in enumerate(meas.blobs):
            areas, labels = self._size_classes(np.concatenate(per_image), j)
            self.ref_areas.append(areas)
            self.ref_labels.append(labels)
        self.train_global = self._global_vector(meas)
        self.train_hists = [
            self.histograms(meas.blobs[j], self.ref_areas[j], self.ref_labels[j])
            for j in range(len(meas.blobs))
        ]
        self.fitted = True
        return self

    def _global_vector(self, meas: Measurements) -> np.ndarray:
        parts = [meas.area / self.mean_area, meas.colour / self.mean_colour]
        if self.use_position:
            parts += [meas.centroid[..., 0], meas.centroid[..., 1]]
        return np.concatenate(parts, axis=1)

    # -- scoring ---------------------------------------------------------------------------
    def score(
        self,
        grey: torch.Tensor | None,
        images_uint8: np.ndarray | None,
        components: Sequence[int] | None = None,
    ) -> LogicalScore:
        """Logical scores of images; ``grey=None`` scores the training images leave-one-out.

        ``components`` are positions among the kept components (default: all)."""
        if not self.fitted:
            raise ValueError("the logical model is not fitted; call fit first")
        m = len(self.multipliers)
        chosen = list(range(m)) if components is None else list(components)
        bad = [c for c in chosen if not 0 <= c < m]
        if bad or not chosen:
            raise ValueError(f"components {bad or chosen} are not among the {m} kept components")
        if grey is None:
            query, hists = None, [None] * m
            vec = self.train_global
        else:
            if grey.shape[1] != m:
                raise ValueError(
                    f"maps have {grey.shape[1]} components, the model was fitted on {m}"
                )
            meas = self.measure(self.masks(grey, self.multipliers), images_uint8)
            vec = query = self._global_vector(meas)
            hists = [
                self.histograms(meas.blobs[j], self.ref_areas[j], self.ref_labels[j])
                for j in range(m)
            ]
        per = 4 if self.use_position else 2
        columns = [c + m * p for p in range(per) for c in chosen]
        train_cols = self.train_global[:, columns]
        global_ = knn_scores(
            train_cols, None if query is None else query[:, columns], self.n_neighbors
        )
        n = len(global_)
        hist_terms = np.zeros((n, len(chosen)))
        for pos, j in enumerate(chosen):
            d = self.train_hists[j].shape[1]
            weight = self.hist_weight / d**2
            hist_terms[:, pos] = weight * knn_scores(
                self.train_hists[j], hists[j], self.n_neighbors
            )
        share = self._shares(train_cols, vec[:, columns], query is None)
        contributions = np.zeros((n, len(chosen), 3))
        for p in range(per):
            contributions[:, :, 1 if p == 1 else 0] += (
                share[:, p * len(chosen) : (p + 1) * len(chosen)] * global_[:, None]
            )
        contributions[:, :, 2] = hist_terms
        return LogicalScore(
            total=global_ + hist_terms.sum(1),
            global_=global_,
            hist=hist_terms,
            area=vec[:, :m][:, chosen],
            colour=vec[:, m : 2 * m][:, chosen],
            contributions=contributions,
            components=chosen,
        )

    def _shares(self, train: np.ndarray, query: np.ndarray, leave_one_out: bool) -> np.ndarray:
        """Each feature's share of the squared distance to the nearest training neighbours."""
        from sklearn.neighbors import NearestNeighbors

        k = min(self.n_neighbors + int(leave_one_out), len(train))
        _, idx = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(query)
        if leave_one_out:
            idx = idx[:, 1:]
        diff2 = ((query[:, None, :] - train[idx]) ** 2).mean(1)
        return diff2 / np.maximum(diff2.sum(1, keepdims=True), 1e-12)

    # -- state -----------------------------------------------------------------------------
    def state(self) -> dict[str, torch.Tensor]:
        state = {
            "multipliers": torch.tensor(self.multipliers, dtype=torch.float64),
            "mean_area": torch.from_numpy(self.mean_area),
            "mean_colour": torch.from_numpy(self.mean_colour),
            "train_global": torch.from_numpy(self.train_global),
        }
        for j in range(len(self.multipliers)):
            state[f"ref_areas_{j}"] = torch.from_numpy(
                np.asarray(self.ref_areas[j], dtype=np.float64)
            )
            state[f"ref_labels_{j}"] = torch.from_numpy(
                np.asarray(self.ref_labels[j], dtype=np.int64)
            )
            state[f"train_hist_{j}"] = torch.from_numpy(self.train_hists[j])
        return state

    def load_state(self, state: dict[str, torch.Tensor]) -> ComponentLogicModel:
        self.multipliers = [float(v) for v in state["multipliers"]]
        self.mean_area = state["mean_area"].numpy()
        self.mean_colour = state["mean_colour"].numpy()
        self.train_global = state["train_global"].numpy()
        m = len(self.multipliers)
        self.ref_areas = [state[f"ref_areas_{j}"].numpy() for j in range(m)]
        self.ref_labels = [state[f"ref_labels_{j}"].numpy() for j in range(m)]
        self.train_hists = [state[f"train_hist_{j}"].numpy() for j in range(m)]
        self.fitted = True
        return self
