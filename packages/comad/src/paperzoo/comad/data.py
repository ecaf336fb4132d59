"""Data: the MVTec LOCO layout from a user root, user folders of images, and the generator's
data sets (written by :mod:`paperzoo.comad.synth` in the same layout).

LOCO layout (spec section 3)::

    <root>/<category>/train/good/*.png
                      validation/good/*.png
                      test/{good,logical_anomalies,structural_anomalies}/*.png
                      ground_truth/{logical,structural}_anomalies/<stem>/000.png [001.png ...]
                      defects_config.json

The defect of a test image is the ``defects_config.json`` entry whose ``pixel_value`` its
ground-truth masks carry (the LOCO convention). Masks serve plots only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from paperzoo.core.data import IMAGE_EXTENSIONS, WIDE_MODES, is_hidden, open_image

KINDS = ("good", "logical_anomalies", "structural_anomalies")
SPLITS = ("train", "validation", "test")
UNLABELLED = ""  # kind and subtype of user images, which carry no label
MIN_TRAIN = 6


@dataclass
class ImageSet:
    """Images of one folder (or several) as uint8 ``(N, H, W, 3)`` with paths and labels."""

    paths: list[Path]
    images: np.ndarray
    kinds: list[str]  # good | logical | structural, or UNLABELLED ("") for user images
    subtypes: list[str]

    def tensor(self, size: int) -> torch.Tensor:
        """Float ``(N, 3, size, size)`` in [0, 1], resized ignoring the aspect ratio (paper)."""
        from paperzoo.comad.model import to_model_input

        return to_model_input(self.images, size)

    def __len__(self) -> int:
        return len(self.paths)


def list_images(folder: str | Path) -> list[Path]:
    """The image files of a folder by name; hidden files (``.DS_Store``, ``._x.png``) skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p)
    )


def _wide_values(image, path: Path) -> np.ndarray | None:
    """The samples of a 16-bit, 32-bit integer or float grey image as float64 (``None`` for
    the 8-bit modes PIL converts), refusing NaN, and integers outside 0..65535."""
    if image.mode not in WIDE_MODES:
        return None
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: NaN or infinite pixels")
    if image.mode != "F" and (values.min(initial=0) < 0 or values.max(initial=0) > 65535):
        raise ValueError(
            f"{path}: integer pixels outside the 16-bit range 0..65535 (found "
            f"{values.min():g} to {values.max():g})"
        )
    return values


def read_rgb(path: str | Path) -> np.ndarray:
    """An image as displayed, uint8 ``(H, W, 3)``: the core's ``unit_bytes`` with the EXIF
    orientation applied (grey, palette and CMYK converted; 16-bit pixels ``round(v / 257)``,
    float pixels in [0, 1] by 255; an opaque alpha band dropped). Transparent pixels (hidden
    colour) and floats outside [0, 1] are refused naming the file."""
    from paperzoo.core.data import unit_bytes

    return unit_bytes(path, "RGB", upright=True)


def read_defect_mask(path: str | Path) -> np.ndarray:
    """A LOCO ground-truth mask as uint8 pixel values ``(H, W)``, as displayed like the images
    (its own EXIF orientation applied, if it has one): a grey image, or an RGB or palette image
    whose pixels are all grey; a 16-bit mask holds 8-bit values as they are, or scaled by 257.
    Colour masks, float masks, other 16-bit values and transparent pixels (a mask kept in the
    alpha band would read as empty) are refused naming the file; an opaque alpha band is dropped."""
    from paperzoo.core.data import check_opaque

    path = Path(path)
    image = open_image(path, "mask", upright=True)
    check_opaque(image, path)
    values = _wide_values(image, path)
    if values is not None:
        if image.mode == "F":
            raise ValueError(f"{path}: a float mask; LOCO masks hold integer pixel values")
        if values.max(initial=0) > 255:
            if (values % 257).any():
                raise ValueError(
                    f"{path}: 16-bit mask values are not pixel values 0..255 (as they are, or "
                    "scaled by 257)"
                )
            values = values // 257
        return values.astype(np.uint8)
    if image.mode in ("1", "L"):
        return np.asarray(image.convert("L")).copy()
    rgb = np.asarray(image.convert("RGB"))
    if (rgb.max(axis=2) != rgb.min(axis=2)).any():
        raise ValueError(
            f"{path}: a colour mask; LOCO masks are grey, a defect's pixels at its pixel_value"
        )
    return rgb[..., 0].copy()


def _displayed_size(path: Path) -> tuple[tuple[int, int], int]:
    """``(height, width)`` of an image as :func:`read_rgb` reads it, from its header, and its
    EXIF orientation."""
    from paperzoo.core.data import image_header

    (width, height), orientation = image_header(path)
    if orientation in (5, 6, 7, 8):  # shown turned by 90 degrees
        width, height = height, width
    return (height, width), orientation


def read_images(
    paths: list[Path], reference: tuple[Path, tuple[int, int]] | None = None
) -> np.ndarray:
    """Read images as uint8 ``(N, H, W, 3)`` (:func:`read_rgb`); images of different sizes
    name two files."""
    if not paths:
        raise ValueError("no images to read")
    arrays = []
    ref_path, ref_size = reference if reference is not None else (None, None)
    for path in paths:
        image = read_rgb(path)
        size = image.shape[:2]
        if ref_size is None:
            ref_path, ref_size = path, size
        elif size != ref_size:
            raise ValueError(
                f"images of different sizes in one category: {ref_path} is "
                f"{ref_size[1]}x{ref_size[0]}, {path} is {size[1]}x{size[0]}"
            )
        arrays.append(image)
    return np.stack(arrays)


def read_defects_config(path: str | Path) -> dict[int, dict]:
    """``defects_config.json`` -> pixel value -> entry: UTF-8 JSON (a byte-order mark
    dropped); a missing file, other text encodings and malformed files name the file and the
    problem."""
    from paperzoo.core.data import read_json

    path = Path(path)
    entries = read_json(path, "defects config")
    if not isinstance(entries, list):
        raise ValueError(f"malformed defects config {path}: expected a list of defect entries")
    out: dict[int, dict] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "defect_name" not in entry or "pixel_value" not in entry:
            raise ValueError(
                f"malformed defects config {path}: entry {i} lacks defect_name or pixel_value"
            )
        value = entry["pixel_value"]
        if not isinstance(value, int) or not 0 < value < 256:
            raise ValueError(
                f"malformed defects config {path}: entry {i} has pixel_value {value!r} (1..255)"
            )
        out[value] = entry
    return out


class LocoCategory:
    """One category of an MVTec LOCO root: ``train()``, ``val()``, ``test(kind)``, ``masks(path)``.

    ``splits`` names the splits checked up front (``train``, ``validation``, ``test``; all by
    default): a verb asks only for what it uses, so fitting needs no test split and no
    ``defects_config.json``. A split left out is checked when it is first read. Missing folders,
    ground-truth folders without a test image, and images of different sizes raise errors that
    name the path before any work starts.
    """

    def __init__(self, root: str | Path, category: str, splits: Sequence[str] = SPLITS) -> None:
        self.root = Path(root)
        self.folder = self.root / category
        self.category = category
        unknown = [s for s in splits if s not in SPLITS]
        if unknown:
            raise ValueError(f"unknown splits {unknown}; choose from {', '.join(SPLITS)}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"data root not found: {self.root}")
        if not self.folder.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not is_hidden(p))
            raise FileNotFoundError(
                f"category folder not found: {self.folder} (categories here: {found})"
            )
        self._size: tuple[Path, tuple[int, int]] | None = None
        self._checked: set[str] = set()
        self._defects: dict[int, dict] = {}
        self._check(splits)

    def _check(self, splits: Sequence[str]) -> None:
        """Check the named splits not yet checked: folders, then the defects config, then the
        number of training images, then the ground-truth folders."""
        todo = [s for s in SPLITS if s in splits and s not in self._checked]
        folders = {
            "train": ["train/good"],
            "validation": ["validation/good"],
            "test": [f"test/{k}" for k in KINDS],
        }
        for sub in (sub for split in todo for sub in folders[split]):
            if not (self.folder / sub).is_dir():
                raise FileNotFoundError(f"split folder not found: {self.folder / sub}")
        if "test" in todo:
            self._defects = read_defects_config(self.folder / "defects_config.json")
        if "train" in todo:
            train = list_images(self.folder / "train" / "good")
            if len(train) < MIN_TRAIN:
                raise ValueError(
                    f"{self.folder / 'train' / 'good'} holds {len(train)} images; at least {MIN_TRAIN} are needed"
                )
        if "test" in todo:
            for kind in KINDS[1:]:
                gt = self.folder / "ground_truth" / kind
                if gt.is_dir():
                    stems = {p.stem for p in list_images(self.folder / "test" / kind)}
                    orphans = sorted(
                        d.name
                        for d in gt.iterdir()
                        if d.is_dir() and d.name not in stems and not is_hidden(d)
                    )
                    if orphans:
                        raise ValueError(
                            f"ground-truth folder {gt / orphans[0]} has no matching test image "
                            f"in {self.folder / 'test' / kind}"
                        )
        self._checked.update(todo)

    @property
    def defects(self) -> dict[int, dict]:
        """``defects_config.json`` as pixel value -> entry (checks the test split)."""
        self._check(("test",))
        return self._defects

    def _read(self, paths: list[Path], kind: str) -> ImageSet:
        images = read_images(paths, self._size)
        if self._size is None:
            self._size = (paths[0], images.shape[1:3])
        subtypes = [self.subtype(p) if kind != "good" else "good" for p in paths]
        return ImageSet(paths, images, [kind] * len(paths), subtypes)

    def train(self) -> ImageSet:
        self._check(("train",))
        return self._read(list_images(self.folder / "train" / "good"), "good")

    def val(self) -> ImageSet:
        self._check(("validation",))
        paths = list_images(self.folder / "validation" / "good")
        if not paths:
            raise ValueError(f"no validation images in {self.folder / 'validation' / 'good'}")
        return self._read(paths, "good")

    def test(self, kind: str = "all") -> ImageSet:
        """Test images of one kind (``good``, ``logical``, ``structural``) or ``all``."""
        names = {
            "good": "good",
            "logical": "logical_anomalies",
            "structural": "structural_anomalies",
        }
        if kind != "all" and kind not in names:
            raise ValueError(f"unknown test kind {kind!r}; choose from all, {', '.join(names)}")
        self._check(("test",))
        chosen = list(names) if kind == "all" else [kind]
        parts = [
            self._read(list_images(self.folder / "test" / names[k]), k)
            for k in chosen
            if list_images(self.folder / "test" / names[k])
        ]
        if not parts:
            raise ValueError(f"no test images of kind {kind!r} in {self.folder / 'test'}")
        return ImageSet(
            [p for s in parts for p in s.paths],
            np.concatenate([s.images for s in parts]),
            [k for s in parts for k in s.kinds],
            [t for s in parts for t in s.subtypes],
        )

    def masks(self, path: str | Path) -> list[np.ndarray]:
        """The ground-truth masks (uint8 pixel values, :func:`read_defect_mask`) of a test
        image, one per file, pixel for pixel with the image as read (both as displayed: a
        mask is drawn on the upright image of a photo with an EXIF orientation); a mask of
        another size than its image as displayed is refused naming both."""
        self._check(("test",))
        path = Path(path)
        gt = self.folder / "ground_truth" / path.parent.name / path.stem
        if not gt.is_dir():
            return []
        masks = [(p, read_defect_mask(p)) for p in list_images(gt)]
        if not masks or not path.is_file():
            return [mask for _, mask in masks]
        (height, width), orientation = _displayed_size(path)
        for mask_path, mask in masks:
            if mask.shape != (height, width):
                turned = orientation in (5, 6, 7, 8) and mask.shape == (width, height)
                hint = (
                    f" as displayed (EXIF orientation {orientation} turns its stored "
                    f"{height}x{width} pixels); draw the mask on the upright image"
                    if turned
                    else ""
                )
                raise ValueError(
                    f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {path} "
                    f"is {width}x{height}{hint}"
                )
        return [mask for _, mask in masks]

    def subtype(self, path: Path) -> str:
        """The defect name of a test image: the config entry whose pixel value covers the most
        ground-truth pixels (grey edge values of an anti-aliased mask do not outvote it), or
        ``unknown`` when no mask value is in the config."""
        counts: dict[int, int] = {}
        for mask in self.masks(path):
            values, n = np.unique(mask, return_counts=True)
            for v, k in zip(values.tolist(), n.tolist(), strict=True):
                if v in self.defects:
                    counts[v] = counts.get(v, 0) + k
        if not counts:
            return "unknown"
        value = max(sorted(counts), key=counts.__getitem__)  # ties: the smaller value
        return self.defects[value]["defect_name"]

    def group(self, subtype: str) -> str:
        """The ``group`` field of a defect (``count``, ``colour``, ...) when the config has one."""
        for entry in self.defects.values():
            if entry["defect_name"] == subtype:
                return str(entry.get("group", "unknown"))
        return "unknown"

    def components(self, split: str, paths: list[Path]) -> np.ndarray:
        """The generator's hidden part-label maps for ``paths`` (tests and mIoU only)."""
        from PIL import Image

        out = []
        for p in paths:
            label = self.folder / "components" / split / p.parent.name / f"{p.stem}.png"
            if not label.is_file():
                raise FileNotFoundError(
                    f"part-label map not found: {label} (only generated data sets have them)"
                )
            out.append(np.asarray(Image.open(label)))
        return np.stack(out)


def folder_images(folder: str | Path) -> ImageSet:
    """A user folder of good or unlabelled images (all the same size); kind and subtype stay
    empty (:data:`UNLABELLED`): a folder carries no label."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    unlabelled = [UNLABELLED] * len(paths)
    return ImageSet(paths, read_images(paths), unlabelled, list(unlabelled))


def npz_images(path: str | Path, key: str = "images") -> ImageSet:
    """``npz:FILE``: uint8 ``(N, H, W, 3)`` images under ``key`` in a NumPy archive (unlabelled)."""
    from paperzoo.core.data import read_npz

    path = Path(path)
    images = read_npz(path, required=(key,), what="image archive")[key]
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise ValueError(
            f"{path}:{key} must be uint8 (N, H, W, 3) with N >= 1, got {images.dtype} "
            f"{images.shape}"
        )
    paths = [Path(f"{path}#{i}") for i in range(len(images))]
    unlabelled = [UNLABELLED] * len(images)
    return ImageSet(paths, images, unlabelled, list(unlabelled))


def load_images(source: str | Path) -> ImageSet:
    """``npz:FILE`` or a folder of images."""
    source = str(source)
    if source.startswith("npz:"):
        return npz_images(source[4:])
    return folder_images(source)


class LocoDataModule(L.LightningDataModule):
    """A LOCO category as a LightningDataModule of uint8 ``(H, W, 3)`` images: ``train``
    (train/good), ``val`` (validation/good) and ``test`` (all test images, with kind labels
    0 good, 1 logical, 2 structural)."""

    def __init__(self, root: str | Path, category: str, batch_size: int = 16) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.category = LocoCategory(root, category)
        self.batch_size = batch_size

    def _loader(self, images: ImageSet) -> DataLoader:
        codes = {"good": 0, "logical": 1, "structural": 2}
        labels = torch.tensor([codes[k] for k in images.kinds])
        return DataLoader(
            TensorDataset(torch.from_numpy(images.images), labels), batch_size=self.batch_size
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.category.train())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.category.val())

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.category.test())
