"""Baselines of the validation: a global kNN on mean-pooled features, and the per-feature
scorer of V3 (each measurement on its own, no relations between components)."""

from __future__ import annotations

import numpy as np
import torch

from paperzoo.comad.logical import knn_scores


class GlobalKNN:
    """Mean-pooled featuriser output per image, scored by the mean distance to the ``k`` nearest
    training images (leave-one-out on training images)."""

    def __init__(self, featuriser, k: int = 5, batch_size: int = 16) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.featuriser, self.k, self.batch_size = featuriser, k, batch_size
        self.train: np.ndarray | None = None

    def embed(self, images: torch.Tensor) -> np.ndarray:
        return torch.cat(
            [
                self.featuriser(images[i : i + self.batch_size].float()).float().mean((-1, -2))
                for i in range(0, images.shape[0], self.batch_size)
            ]
        ).numpy()

    def fit(self, images: torch.Tensor) -> GlobalKNN:
        self.train = self.embed(images)
        return self

    def score(self, images: torch.Tensor | None = None) -> np.ndarray:
        if self.train is None:
            raise ValueError("GlobalKNN is not fitted")
        return knn_scores(self.train, None if images is None else self.embed(images), self.k)


class PerFeatureScorer:
    """Max over features of the 1-D ``k``-NN distance divided by its leave-one-out training mean:
    every marginal is checked, no joint relation (the V3 ablation)."""

    def __init__(self, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.train: np.ndarray | None = None

    def fit(self, features: np.ndarray) -> PerFeatureScorer:
        self.train = np.asarray(features, dtype=np.float64)
        loo = np.stack(
            [
                knn_scores(self.train[:, d : d + 1], None, self.k)
                for d in range(self.train.shape[1])
            ],
            1,
        )
        self.scale = np.maximum(loo.mean(0), 1e-12)
        return self

    def score(self, features: np.ndarray | None = None) -> np.ndarray:
        if self.train is None:
            raise ValueError("PerFeatureScorer is not fitted")
        query = None if features is None else np.asarray(features, dtype=np.float64)
        per = np.stack(
            [
                knn_scores(
                    self.train[:, d : d + 1], None if query is None else query[:, d : d + 1], self.k
                )
                for d in range(self.train.shape[1])
            ],
            1,
        )
        return (per / self.scale).max(1)
