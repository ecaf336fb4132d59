"""Shared fixtures: one torch thread, tiny frame arrays and data trees built on the fly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def toy_frames(n: int = 32, size: int = 32, seed: int = 0, shift: float = 0.25):
    """Balanced toy frames: fakes carry a bright square (a learnable cue)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.2 + 0.5 * torch.rand(n, 3, size, size, generator=g)
    labels = torch.arange(n) % 2
    images[labels == 1, :, size // 4 : size // 2, size // 4 : size // 2] += shift
    return images.clamp(0, 1), labels


@pytest.fixture
def npz_pair(tmp_path):
    """Two .npz frame files (weights and auxiliary data) in the user-array format."""
    paths = []
    for name, seed in (("a", 0), ("c", 1)):
        images, labels = toy_frames(32, seed=seed)
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=images.numpy(), labels=labels.numpy(), video_ids=np.arange(32) % 16)
        paths.append(path)
    return paths
