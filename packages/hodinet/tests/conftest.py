"""Shared fixtures: one torch thread, small generated scenes, tiny RGB-D folder trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def scenes():
    from paperzoo.hodinet.scenes import SyntheticRGBDScenes

    return SyntheticRGBDScenes(24, seed=3)


def write_set(folder: Path, stems=("a", "b", "c"), size=(40, 30), rgb_dir="RGB", depth_dir="depth",
              gt_dir="GT", depth_bits: int = 8, seed: int = 0, gt_high: int = 255) -> Path:
    """A set folder in the standard layout: RGB .jpg, depth .png (8 or 16 bit), GT .png whose
    object (the centre half) is ``gt_high`` (255, or 1 for a 0/1 mask) on 0."""
    rng = np.random.default_rng(seed)
    w, h = size
    for sub in (rgb_dir, depth_dir, gt_dir):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / rgb_dir / f"{stem}.jpg")
        if depth_bits == 16:
            depth = (rng.random((h, w)) * 60000).astype(np.uint16)
            Image.fromarray(depth).save(folder / depth_dir / f"{stem}.png")
        else:
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(folder / depth_dir / f"{stem}.png")
        gt = np.zeros((h, w), np.uint8)
        gt[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = gt_high
        Image.fromarray(gt).save(folder / gt_dir / f"{stem}.png")
    return folder


@pytest.fixture
def set_folder(tmp_path) -> Path:
    return write_set(tmp_path / "NJU2K")
