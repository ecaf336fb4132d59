"""Procedural RGB-D scenes where each modality is needed (spec section 3).

Every scene has a smooth random colour field, a depth map that is a floor ramp (near = 1 at the
bottom) plus low-frequency noise, and one salient object (a rotated ellipse or a polygon covering
5-25 % of the image, drawn with ``skimage.draw``). Kinds cycle over the scenes:

- ``camo``: the object's RGB pixels *are* the background's (no seam, pitfall 11); only depth,
  where the object stands nearer than the floor, shows it;
- ``baddepth``: the object has its own colour but no depth cue (depth is the floor there);
- ``both``: own colour and nearer than the floor.

With probability ``distractor_p`` a vivid non-salient disk at floor depth is added.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

KINDS = ("camo", "baddepth", "both")


def _smooth_field(rng: np.random.Generator, channels: int, size: int, grid: int) -> np.ndarray:
    """A low-frequency random field in [0, 1]: a ``grid x grid`` random image, bicubic-upsampled."""
    coarse = torch.from_numpy(rng.random((1, channels, grid, grid)))
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0]
    return field.clamp(0, 1).numpy()


def _object_mask(rng: np.random.Generator, size: int, lo: float = 0.05, hi: float = 0.25) -> np.ndarray:
    """A rotated ellipse or a star-shaped polygon covering ``lo``-``hi`` of the image."""
    from skimage.draw import ellipse, polygon

    for _ in range(100):
        area = rng.uniform(lo, hi) * size * size
        mask = np.zeros((size, size), dtype=bool)
        if rng.random() < 0.5:
            aspect = rng.uniform(1.0, 2.2)
            rr_radius = np.sqrt(area / np.pi * aspect)
            cc_radius = rr_radius / aspect
            centre = rng.uniform(0.3, 0.7, size=2) * size
            rr, cc = ellipse(centre[0], centre[1], rr_radius, cc_radius, shape=(size, size),
                             rotation=rng.uniform(-np.pi, np.pi))
        else:
            vertices = int(rng.integers(5, 9))
            angles = np.sort(rng.uniform(0, 2 * np.pi, vertices))
            radii = rng.uniform(0.6, 1.0, vertices)
            # area of a star polygon with unit-scaled radii, to scale it to the target area
            unit = 0.5 * np.sum(radii * np.roll(radii, -1) * np.sin(np.diff(np.r_[angles, angles[0] + 2 * np.pi])))
            scale = np.sqrt(area / max(unit, 1e-3))
            centre = rng.uniform(0.3, 0.7, size=2) * size
            rr, cc = polygon(centre[0] + scale * radii * np.sin(angles),
                             centre[1] + scale * radii * np.cos(angles), shape=(size, size))
        mask[rr, cc] = True
        if lo <= mask.mean() <= hi:
            return mask
    raise RuntimeError("could not draw an object of the requested size")  # pragma: no cover


def _distractor(rng: np.random.Generator, size: int, avoid: np.ndarray) -> np.ndarray:
    """A small disk (2-5 % of the image) that does not overlap the object."""
    from skimage.draw import disk

    for _ in range(50):
        radius = np.sqrt(rng.uniform(0.02, 0.05) * size * size / np.pi)
        centre = rng.uniform(radius, size - radius, size=2)
        mask = np.zeros((size, size), dtype=bool)
        rr, cc = disk(tuple(centre), radius, shape=(size, size))
        mask[rr, cc] = True
        if not (mask & avoid).any():
            return mask
    return np.zeros((size, size), dtype=bool)


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere."""
    colour = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.15), rng.uniform(0.0, 1.0)])
    return rng.permutation(colour)


def make_scene(rng: np.random.Generator, kind: str, size: int = 64, distractor: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene ``(rgb (3,H,W), depth (1,H,W), gt (1,H,W))``, float32, depth near = 1."""
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose from {', '.join(KINDS)}")
    rgb = _smooth_field(rng, 3, size, grid=int(rng.integers(3, 6)))
    rows = np.linspace(0.0, 1.0, size)[:, None]
    floor = 0.15 + 0.45 * rows + 0.08 * (_smooth_field(rng, 1, size, grid=3)[0] - 0.5)
    floor = np.broadcast_to(floor, (size, size)).copy()
    obj = _object_mask(rng, size)
    depth = floor.copy()
    if kind in ("camo", "both"):
        # the object stands nearer than the floor anywhere under it, with a gentle tilt
        depth[obj] = floor[obj].max() + rng.uniform(0.15, 0.3) + 0.05 * (rows[:, 0][np.nonzero(obj)[0]] - 0.5)
    if kind in ("baddepth", "both"):
        colour = _vivid_colour(rng)
        shade = 0.9 + 0.1 * _smooth_field(rng, 1, size, grid=2)[0]
        rgb[:, obj] = (colour[:, None] * shade[obj][None]).clip(0, 1)
    if distractor:
        blob = _distractor(rng, size, obj)
        rgb[:, blob] = _vivid_colour(rng)[:, None]
    low, high = depth.min(), depth.max()
    depth = (depth - low) / (high - low)
    return rgb.astype(np.float32), depth[None].astype(np.float32), obj[None].astype(np.float32)


class SyntheticRGBDScenes(Dataset):
    """``n`` seeded scenes, kinds cycling; items ``(rgb, depth, gt, kind)``.

    Tensors ``rgb (n, 3, S, S)``, ``depth (n, 1, S, S)``, ``gt (n, 1, S, S)`` and ``kinds`` (list)
    are held in memory. Same ``seed`` -> the same scenes.
    """

    def __init__(self, n: int, size: int = 64, kinds: Sequence[str] = KINDS,
                 distractor_p: float = 0.5, seed: int = 0) -> None:
        if n < 1:
            raise ValueError(f"n (number of scenes) must be >= 1, got {n}")
        if size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {size}")
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {list(kinds)}")
        if not 0.0 <= distractor_p <= 1.0:
            raise ValueError(f"distractor_p must be in [0, 1], got {distractor_p}")
        self.size, self.seed = size, seed
        rng = np.random.default_rng(seed)
        scenes, self.kinds = [], []
        for i in range(n):
            kind = kinds[i % len(kinds)]
            scenes.append(make_scene(rng, kind, size, distractor=bool(rng.random() < distractor_p)))
            self.kinds.append(kind)
        self.rgb = torch.from_numpy(np.stack([s[0] for s in scenes]))
        self.depth = torch.from_numpy(np.stack([s[1] for s in scenes]))
        self.gt = torch.from_numpy(np.stack([s[2] for s in scenes]))

    def __len__(self) -> int:
        return len(self.kinds)

    def __getitem__(self, index: int):
        return self.rgb[index], self.depth[index], self.gt[index], self.kinds[index]

    def indices(self, kind: str) -> list[int]:
        """The indices of the scenes of one kind."""
        return [i for i, k in enumerate(self.kinds) if k == kind]
