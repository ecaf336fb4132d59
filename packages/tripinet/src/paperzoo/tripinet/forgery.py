"""Offline forgeries from scikit-image's bundled photographs (spec section 3) and the
post-processing used for the robustness table (``perturb``).

A host crop on the 8-pixel grid; 25 % stay authentic. Otherwise a mask (smoothed-noise blob,
random polygon or union of SLIC superpixels; 5-35 % of the crop), a donor crop of the same photo
(copy-move) or of another photo of the split (splice), matched to the host per channel (mean,
std), carrying one trace (``noise``, ``blur`` or ``jpeg``), pasted with a feathered alpha. Then,
forged and authentic alike, a whole-image JPEG 90-95 with probability 0.5 and rounding to 8 bits:
no shortcut of float composites beside 8-bit hosts, no hard seams, no unmatched colours.
Train and test hosts are different photographs, so no photo is in both splits.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
TEST_PHOTOS = ("immunohistochemistry", "retina", "motorcycle_left")
SPLITS = {"train": TRAIN_PHOTOS, "test": TEST_PHOTOS}
KINDS = ("noise", "blur", "jpeg")
SPEC_FINAL_JPEG_PROB = 0.5  # spec section 3: whole-image JPEG 90-95 half the time
MASK_SHAPES = ("blob", "polygon", "slic")
MIN_STD = 0.04  # luminance std of a usable host crop (black retina corners, empty sky)


@functools.lru_cache(maxsize=16)
def load_photo(name: str, short_side: int) -> np.ndarray:
    """A bundled photograph as uint8 ``(H, W, 3)``, its shorter side resized to ``short_side``."""
    from PIL import Image

    if name == "motorcycle_left":
        from skimage import data as skdata

        array = skdata.stereo_motorcycle()[0]
    else:
        from paperzoo.core.data import photos

        array = (photos([name])[name].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    if array.ndim == 2 or array.shape[2] == 1:
        array = np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2)
    image = Image.fromarray(np.ascontiguousarray(array[..., :3]))
    scale = short_side / min(image.size)
    size = (
        max(short_side, round(image.size[0] * scale)),
        max(short_side, round(image.size[1] * scale)),
    )
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


JPEG_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def jpeg(image: np.ndarray, quality: int, subsampling: int | None = None) -> np.ndarray:
    """PIL JPEG round trip of a uint8 ``(H, W, 3)`` image. ``subsampling``: PIL's chroma
    subsampling (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0); ``None`` keeps PIL's default (4:2:0)."""
    from PIL import Image

    options = {} if subsampling is None else {"subsampling": int(subsampling)}
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality), **options)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _resample(image: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    small = Image.fromarray(_to_uint8(image)).resize(
        (max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BILINEAR
    )
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)


@dataclass
class ForgerySet:
    """Generated images: ``images`` uint8 ``(N, 3, H, W)``, ``masks`` uint8 ``(N, 1, H, W)`` (1 =
    tampered), ``labels`` ``(N,)`` (1 = forged), and per image ``kinds`` (noise, blur, jpeg,
    authentic), ``ops`` (splice, copy_move, none), ``hosts`` (the host photograph) and
    ``final_jpeg`` (quality of the whole-image JPEG, 0 where none was applied)."""

    images: torch.Tensor
    masks: torch.Tensor
    labels: torch.Tensor
    kinds: list[str]
    ops: list[str]
    hosts: list[str]
    final_jpeg: list[int] = field(default_factory=list)

    def subset(self, indices: Sequence[int]) -> ForgerySet:
        """The images at ``indices``, in that order, with their labels and metadata."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        pick = [int(i) for i in index]
        return ForgerySet(
            images=self.images[index],
            masks=self.masks[index],
            labels=self.labels[index],
            kinds=[self.kinds[i] for i in pick],
            ops=[self.ops[i] for i in pick],
            hosts=[self.hosts[i] for i in pick],
            final_jpeg=[self.final_jpeg[i] for i in pick] if self.final_jpeg else [],
        )

    def __len__(self) -> int:
        return len(self.labels)


class ForgeryGenerator:
    """Seeded splice / copy-move forgeries of one split's photographs (spec section 3).

    Args:
        split: ``train`` or ``test`` (disjoint photographs), or ``photos`` given explicitly.
        size: crop side (a multiple of 8).
        photo_side: each photograph's shorter side after resizing, before cropping.
        authentic_fraction: share of untouched images.
        final_jpeg_prob: probability of the whole-image JPEG 90-95 (authentic and forged alike).
        kinds: donor traces to draw from.
        jpeg_subsampling: chroma subsampling of every JPEG the generator writes (the donor's
            ``jpeg`` trace and the whole-image JPEG): 0 (4:4:4), 1 (4:2:2), 2 (4:2:0), or
            ``None`` for PIL's default (4:2:0; the spec names PIL and no subsampling).
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 64,
        photo_side: int = 256,
        authentic_fraction: float = 0.25,
        final_jpeg_prob: float = SPEC_FINAL_JPEG_PROB,
        kinds: Sequence[str] = KINDS,
        photos: Sequence[str] | None = None,
        jpeg_subsampling: int | None = None,
    ) -> None:
        if photos is None:
            if split not in SPLITS:
                raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
            photos = SPLITS[split]
        if len(photos) < 2:
            raise ValueError(
                f"a split needs at least two photographs (splices), got {list(photos)}"
            )
        if size < 32 or size % 8:
            raise ValueError(f"size must be a multiple of 8 and >= 32, got {size}")
        if photo_side < size + 8:
            raise ValueError(f"photo_side must be >= size + 8 = {size + 8}, got {photo_side}")
        for name, value in (
            ("authentic_fraction", authentic_fraction),
            ("final_jpeg_prob", final_jpeg_prob),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or not kinds:
            raise ValueError(f"kinds must be taken from {', '.join(KINDS)}, got {list(kinds)}")
        if jpeg_subsampling is not None and jpeg_subsampling not in JPEG_SUBSAMPLING:
            raise ValueError(
                "jpeg_subsampling must be None or one of "
                + ", ".join(f"{k} ({v})" for k, v in JPEG_SUBSAMPLING.items())
                + f", got {jpeg_subsampling!r}"
            )
        self.jpeg_subsampling = jpeg_subsampling
        self.photos = tuple(photos)
        self.size, self.photo_side = size, photo_side
        self.authentic_fraction, self.final_jpeg_prob = authentic_fraction, final_jpeg_prob
        self.kinds = tuple(kinds)

    # -- pieces -------------------------------------------------------------------------------
    def _crop(
        self,
        name: str,
        rng: np.random.Generator,
        extra: int = 0,
        avoid: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """A crop of side ``size + extra`` at an offset on the 8-pixel grid, luminance std >= 0.04."""
        photo = load_photo(name, self.photo_side)
        side = self.size + extra
        rows, cols = (photo.shape[0] - side) // 8, (photo.shape[1] - side) // 8
        best, best_std = None, -1.0
        for _ in range(50):
            offset = (8 * int(rng.integers(0, rows + 1)), 8 * int(rng.integers(0, cols + 1)))
            if offset == avoid:
                continue
            crop = photo[offset[0] : offset[0] + side, offset[1] : offset[1] + side].astype(
                np.float64
            )
            std = float((crop @ np.array([0.299, 0.587, 0.114]) / 255.0).std())
            if std >= MIN_STD:
                return crop, offset
            if std > best_std:
                best, best_std = (crop, offset), std
        if best is None:
            raise ValueError(f"photo {name} has no crop of side {side} away from {avoid}")
        return best

    def _mask(self, host: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A binary mask covering 5-35 % of the crop."""
        from scipy.ndimage import gaussian_filter
        from skimage.draw import polygon
        from skimage.segmentation import slic

        h, w = host.shape[:2]
        target = rng.uniform(0.05, 0.35)
        shape = MASK_SHAPES[int(rng.integers(0, len(MASK_SHAPES)))]
        if shape == "polygon":
            for _ in range(20):
                n = int(rng.integers(3, 9))
                radius = np.sqrt(target * h * w / np.pi) * rng.uniform(0.9, 1.3)
                centre = rng.uniform(0.25, 0.75, size=2) * (h, w)
                angles = np.sort(rng.uniform(0, 2 * np.pi, n))
                radii = radius * rng.uniform(0.6, 1.2, n)
                rr, cc = polygon(
                    centre[0] + radii * np.sin(angles), centre[1] + radii * np.cos(angles), (h, w)
                )
                mask = np.zeros((h, w), dtype=np.uint8)
                mask[rr, cc] = 1
                if 0.05 <= mask.mean() <= 0.35:
                    return mask
        if shape == "slic":
            segments = slic(
                host / 255.0, n_segments=24, compactness=10.0, start_label=0, channel_axis=-1
            )
            mask = np.zeros((h, w), dtype=np.uint8)
            for label in rng.permutation(segments.max() + 1):
                mask[segments == label] = 1
                if mask.mean() >= target:
                    break
            if 0.05 <= mask.mean() <= 0.35:
                return mask
        field = gaussian_filter(rng.standard_normal((h, w)), sigma=rng.uniform(4.0, 8.0))
        return (field > np.quantile(field, 1.0 - target)).astype(np.uint8)

    @staticmethod
    def _match_colours(donor: np.ndarray, host: np.ndarray) -> np.ndarray:
        mean_d, std_d = donor.mean(axis=(0, 1)), donor.std(axis=(0, 1)) + 1e-6
        mean_h, std_h = host.mean(axis=(0, 1)), host.std(axis=(0, 1))
        return np.clip((donor - mean_d) / std_d * std_h + mean_h, 0, 255)

    def _trace(self, donor: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
        """The donor's own trace; ``donor`` is ``size + 8`` wide, the result ``size``."""
        from scipy.ndimage import gaussian_filter

        s = self.size
        if kind == "noise":
            sigma = rng.uniform(4.0, 8.0)
            return np.clip(donor[:s, :s] + rng.normal(0.0, sigma, size=(s, s, 3)), 0, 255)
        if kind == "blur":
            if rng.random() < 0.5:
                return gaussian_filter(donor[:s, :s], sigma=(1.0, 1.0, 0.0))
            return _resample(donor[:s, :s], rng.uniform(0.7, 1.3))
        compressed = jpeg(
            _to_uint8(donor), int(rng.integers(30, 61)), self.jpeg_subsampling
        ).astype(np.float64)
        if rng.random() < 0.5:  # pasted on the host's block grid
            return compressed[:s, :s]
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = int(rng.integers(0, 8)), int(rng.integers(0, 8))
        return compressed[dy : dy + s, dx : dx + s]

    # -- samples -------------------------------------------------------------------------------
    def sample(self, seed: int, index: int) -> dict:
        """Image ``index`` of the set drawn with ``seed`` (independent of the other images)."""
        from scipy.ndimage import gaussian_filter

        rng = np.random.default_rng([int(seed), int(index)])
        host_name = self.photos[int(rng.integers(0, len(self.photos)))]
        host, offset = self._crop(host_name, rng)
        mask = np.zeros(host.shape[:2], dtype=np.uint8)
        kind, op, image = "authentic", "none", host
        if rng.random() >= self.authentic_fraction:
            mask = self._mask(host, rng)
            op = "copy_move" if rng.random() < 0.5 else "splice"
            if op == "copy_move":
                donor, _ = self._crop(host_name, rng, extra=8, avoid=offset)
            else:
                others = [p for p in self.photos if p != host_name]
                donor, _ = self._crop(others[int(rng.integers(0, len(others)))], rng, extra=8)
            kind = self.kinds[int(rng.integers(0, len(self.kinds)))]
            donor = self._trace(self._match_colours(donor, host), kind, rng)
            alpha = np.clip(gaussian_filter(mask.astype(np.float64), sigma=0.7), 0, 1)[..., None]
            image = alpha * donor + (1.0 - alpha) * host
        image = _to_uint8(image)
        final_quality = 0
        if rng.random() < self.final_jpeg_prob:
            final_quality = int(rng.integers(90, 96))
            image = jpeg(image, final_quality, self.jpeg_subsampling)
        return {
            "image": image,
            "mask": mask,
            "label": int(mask.any()),
            "kind": kind,
            "op": op,
            "host": host_name,
            "final_jpeg": final_quality,
        }

    def generate(self, count: int, seed: int = 0, progress: bool = False) -> ForgerySet:
        """``count`` images drawn with ``seed``: the same seed gives the same set."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        indices = range(count)
        if progress:
            from paperzoo.core.runtime import progress as bar

            indices = bar(indices, desc="forgeries", total=count)
        samples = [self.sample(seed, i) for i in indices]
        images = (
            torch.from_numpy(np.stack([s["image"] for s in samples]))
            .permute(0, 3, 1, 2)
            .contiguous()
        )
        masks = torch.from_numpy(np.stack([s["mask"] for s in samples])).unsqueeze(1)
        return ForgerySet(
            images=images,
            masks=masks,
            labels=torch.tensor([s["label"] for s in samples]),
            kinds=[s["kind"] for s in samples],
            ops=[s["op"] for s in samples],
            hosts=[s["host"] for s in samples],
            final_jpeg=[s["final_jpeg"] for s in samples],
        )


PERTURBATIONS = ("none", "jpeg", "resize")


def parse_perturbation(spec: str) -> tuple[str, float]:
    """``"jpeg:75"`` -> ``("jpeg", 75)``, ``"resize:0.5"`` -> ``("resize", 0.5)``, ``"none"``."""
    name, _, value = str(spec).partition(":")
    if name == "none" and not value:
        return "none", 0.0
    if name not in PERTURBATIONS or not value:
        raise ValueError(f"perturbation must be none, jpeg:QUALITY or resize:FACTOR, got {spec!r}")
    try:
        number = float(value)
    except ValueError as error:
        raise ValueError(f"perturbation {spec!r}: {value!r} is not a number") from error
    if name == "jpeg" and not (1 <= number <= 100 and number == int(number)):
        raise ValueError(f"jpeg quality must be an integer in 1-100, got {value}")
    if name == "resize" and not 0.0 < number <= 1.0:
        raise ValueError(f"resize factor must be in (0, 1], got {value}")
    return name, number


def perturb(images: torch.Tensor, spec: str) -> torch.Tensor:
    """Post-process RGB ``images`` (``(B, 3, H, W)`` or ``(3, H, W)``, float in [0, 1]):
    ``jpeg:Q`` (a PIL JPEG round trip) or ``resize:F`` (bilinear down by F and back up)."""
    import torch.nn.functional as F

    name, value = parse_perturbation(spec)
    single = images.dim() == 3
    batch = images.unsqueeze(0) if single else images
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"perturb takes RGB images (B, 3, H, W), got {tuple(images.shape)}")
    if name == "jpeg":
        arrays = (batch.permute(0, 2, 3, 1).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
        out = torch.from_numpy(np.stack([jpeg(a, int(value)) for a in arrays]))
        batch = out.permute(0, 3, 1, 2).to(images.dtype) / 255.0
    elif name == "resize":
        h, w = batch.shape[-2:]
        small = F.interpolate(
            batch,
            size=(max(1, round(h * value)), max(1, round(w * value))),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        batch = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
        batch = (batch * 255.0).round() / 255.0
    return batch[0] if single else batch
