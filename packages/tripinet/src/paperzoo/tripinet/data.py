"""Data: the generated forgeries, the real dataset layouts (CASIA v1/v2, Columbia, Coverage,
NIST16), a plain folder and a JSON list (spec section 3).

Masks are binarised ``> 127`` after polarity fixes (NIST16 is black = manipulated; Columbia's
tri-colour edge masks mark the spliced region in green); a 0/1 mask (values only 0 and 1) is
rescaled to 0/255 before the polarity fix, so 1 marks the foreground as 255 does. Bad data fails early with the file
named: a mask whose size differs from its image, a non-binary or colour mask, an unreadable
image, a missing or empty folder, more than 10 % of forged images without a mask. The data
module checks every file's header (readable, mask size = image size) before any work; what
needs the pixels (a truncated file, a colour or non-binary mask) fails when the file is read.

Training crops ``crop`` x ``crop`` patches on the 8-pixel grid with flips and 90-degree
rotations; evaluation pads each image to a multiple of 32 and scores its real pixels only
(``eval_mode="pad"``) or resizes it (``"resize"``, labelled as such).
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from paperzoo.core.data import WIDE_MODES, image_header, is_hidden, open_image, read_json, read_text
from paperzoo.tripinet.forgery import ForgeryGenerator, ForgerySet

LAYOUTS = ("synthetic", "casia1", "casia2", "columbia", "coverage", "nist16", "folder", "json")
EVAL_MODES = ("pad", "resize")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MAX_MISSING_MASKS = 0.10
GREY_FRACTION = 0.10  # more mid-grey pixels than this: not a binary mask


@dataclass(frozen=True)
class Record:
    """One image of a real data set: its mask (``None`` = authentic) and how to read the mask."""

    image: Path
    mask: Path | None
    invert: bool = False
    colour_channel: int | None = None

    @property
    def label(self) -> int:
        return int(self.mask is not None)


@dataclass
class Listing:
    """The records of a layout and the forged images skipped for lack of a mask."""

    records: list[Record]
    unmatched: list[Path] = field(default_factory=list)


# -- reading ------------------------------------------------------------------------------------
def read_rgb(path: str | Path) -> np.ndarray:
    """An image as uint8 ``(H, W, 3)``, pixels as stored (no EXIF orientation): the core's
    ``unit_bytes`` (grey, palette and CMYK become RGB; 16-bit over 65535 rounded to 8 bits, not
    clipped; an opaque alpha band dropped, transparent pixels refused). Missing, unreadable or
    truncated files raise naming the file."""
    from paperzoo.core.data import unit_bytes

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    return unit_bytes(path, "RGB")


def _mask_levels(image, path: Path) -> np.ndarray:
    """Grey or RGB levels (0-255 scale) of a mask file. 16-bit and float files are scaled by
    ``paperzoo.core.data.unit_array`` (a 16-bit file whose levels are all <= 255, 0/1 or 0/255
    say, is kept as 8-bit levels, as the core's ``read_mask`` does); transparent pixels are
    refused."""
    from paperzoo.core.data import check_opaque, unit_array

    try:
        check_opaque(image, path)
    except ValueError as error:
        raise ValueError(f"mask {error}; the mask must be in the grey levels") from None
    mode = image.mode
    if mode in WIDE_MODES:
        top = np.asarray(image).max(initial=0)
        if mode != "F" and top <= 255:
            return np.asarray(image).astype(np.int16)
        return unit_array(path, "L").astype(np.float64) * 255.0
    if image.mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"), dtype=np.int16)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def read_forgery_mask(
    path: str | Path,
    invert: bool = False,
    colour_channel: int | None = None,
    size: tuple[int, int] | None = None,
    image_path: str | Path | None = None,
) -> np.ndarray:
    """A mask as uint8 ``(H, W)`` in {0, 1} (1 = tampered), pixels as stored (no EXIF orientation).

    ``colour_channel``: Columbia's tri-colour masks, tampered where that channel > 120. Otherwise
    the mask must be grey and two-level (a few mid-grey pixels from JPEG are tolerated) in one of
    these encodings: 0/255 (white = tampered); 0/1 (values only 0 and 1 with at least one 1, a
    label map saved as is: 1 = tampered), rescaled to 0/255 first; grey, binarised at half;
    16-bit (over 65535) or float (in [0, 1]), scaled to 0-255 (see :func:`_mask_levels`).
    Palettes are read by their colours; a transparent mask is refused. It is then inverted when
    ``invert`` (NIST16: black =
    manipulated, so 0 is tampered in a 0/1 NIST16 mask) and binarised ``> 127``. ``size``
    ``(H, W)`` is checked.
    """
    path = Path(path)
    image = open_image(path, "mask")
    if colour_channel is not None:
        array = np.asarray(image.convert("RGB"), dtype=np.int16)
        binary = array[..., colour_channel] > 120
    else:
        array = _mask_levels(image, path)
        if array.ndim == 3:
            spread = array.max(axis=2) - array.min(axis=2)
            if (spread > 32).mean() > 0.01:
                raise ValueError(
                    f"mask {path} is a colour image; masks must be grey "
                    "(Columbia's tri-colour masks are read with layout columbia)"
                )
            array = array.mean(axis=2)
        if array.max(initial=0) == 1:  # only 0 and 1: a 0/1 mask (1 = foreground) -> 0/255
            array = array * 255
        grey = ((array > 32) & (array < 223)).mean()
        if grey > GREY_FRACTION:
            raise ValueError(f"mask {path} is not binary: {grey:.0%} of its pixels are mid-grey")
        if invert:
            array = 255 - array
        binary = array > 127
    if size is not None and binary.shape != tuple(size):
        of = f" of image {image_path}" if image_path is not None else ""
        raise ValueError(
            f"mask {path} is {binary.shape[1]} x {binary.shape[0]} but the image{of} "
            f"is {size[1]} x {size[0]} (width x height)"
        )
    return binary.astype(np.uint8)


def load_record(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """``(image uint8 (H, W, 3), mask uint8 (H, W))`` of a record; authentic: an all-zero mask."""
    image = read_rgb(record.image)
    if record.mask is None:
        return image, np.zeros(image.shape[:2], dtype=np.uint8)
    mask = read_forgery_mask(
        record.mask, record.invert, record.colour_channel, image.shape[:2], record.image
    )
    return image, mask


def check_records(records: Sequence[Record]) -> None:
    """Check every record before any work: image and mask exist and have a readable header, and
    each mask has its image's size; the first bad one raises, naming the file. Pixels are read
    as stored (no EXIF orientation): a warning names pairs whose orientation tags differ.

    Only headers are read. What needs the pixels (a file truncated after its header, a colour or
    non-binary mask) is still found when the record is loaded (:func:`load_record`)."""
    turned = []
    for record in records:
        (width, height), image_tag = image_header(record.image, "image")
        if record.mask is None:
            continue
        (mask_width, mask_height), mask_tag = image_header(record.mask, "mask")
        tags = (
            f" (EXIF orientations: image {image_tag}, mask {mask_tag}; pixels are read as "
            "stored, no tag is applied)"
            if image_tag != mask_tag
            else ""
        )
        if (mask_width, mask_height) != (width, height):
            raise ValueError(
                f"mask {record.mask} is {mask_width} x {mask_height} but its image "
                f"{record.image} is {width} x {height} (width x height){tags}"
            )
        if tags:
            turned.append(f"{record.image}{tags}")
    if turned:
        warnings.warn(
            f"{len(turned)} image/mask pairs carry different EXIF orientations, e.g. {turned[0]}: "
            "check that they align",
            stacklevel=2,
        )


# -- layouts ------------------------------------------------------------------------------------
def _is_image_file(path: Path) -> bool:
    """An image file by extension (any case); hidden entries (macOS ``._`` files, editors'
    temporaries, :func:`paperzoo.core.data.is_hidden`) are not."""
    return path.is_file() and not is_hidden(path) and path.suffix.lower() in IMAGE_EXTS


def _images(folder: Path, what: str, required: bool = True) -> list[Path]:
    if not folder.is_dir():
        if required:
            raise FileNotFoundError(f"{what} folder not found: {folder}")
        return []
    files = sorted(p for p in folder.iterdir() if _is_image_file(p))
    if required and not files:
        raise ValueError(f"{what} folder {folder} holds no images ({', '.join(IMAGE_EXTS)})")
    return files


def _match(
    forged: Sequence[Path],
    find_mask,
    authentic: Sequence[Path] = (),
    invert: bool = False,
    colour_channel: int | None = None,
    what: str = "",
) -> Listing:
    """Pair each forged image with its mask; refuse when over 10 % have none (names a few)."""
    records, unmatched = [], []
    for image in forged:
        mask = find_mask(image)
        if mask is None:
            unmatched.append(image)
        else:
            records.append(Record(image, mask, invert, colour_channel))
    if forged and len(unmatched) > MAX_MISSING_MASKS * len(forged):
        names = ", ".join(p.name for p in unmatched[:5])
        raise ValueError(
            f"{what}: {len(unmatched)} of {len(forged)} forged images have no mask "
            f"(e.g. {names}); over {MAX_MISSING_MASKS:.0%} missing means a wrong root or gt_root"
        )
    records.extend(Record(image, None) for image in authentic)
    if not records:
        raise ValueError(f"{what}: no usable image")
    return Listing(records, unmatched)


def _by_stem(folder: Path, suffix: str = "") -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"mask folder not found: {folder}")
    found = {}
    for path in sorted(folder.iterdir()):
        if _is_image_file(path) and path.stem.endswith(suffix):
            found[path.stem[: len(path.stem) - len(suffix)] if suffix else path.stem] = path
    return found


def _casia2(root: Path, gt_root: Path | None) -> Listing:
    masks = _by_stem(gt_root or root / "Gt", "_gt")
    return _match(
        _images(root / "Tp", "CASIA v2 Tp"),
        lambda p: masks.get(p.stem),
        _images(root / "Au", "CASIA v2 Au", required=False),
        what=f"casia2 {root}",
    )


def _casia1(root: Path, gt_root: Path | None) -> Listing:
    gt = gt_root or root / "Gt"
    forged, masks = [], {}
    for part in ("CM", "Sp"):
        forged += _images(root / "Tp" / part, f"CASIA v1 Tp/{part}")
        masks.update(_by_stem(gt / part, "_gt"))
    return _match(
        forged,
        lambda p: masks.get(p.stem),
        _images(root / "Au", "CASIA v1 Au", required=False),
        what=f"casia1 {root}",
    )


def _columbia(root: Path, channel: int) -> Listing:
    masks = _by_stem(root / "4cam_splc" / "edgemask", "_edgemask")
    return _match(
        _images(root / "4cam_splc", "Columbia 4cam_splc"),
        lambda p: masks.get(p.stem),
        _images(root / "4cam_auth", "Columbia 4cam_auth", required=False),
        colour_channel=channel,
        what=f"columbia {root}",
    )


def _coverage(root: Path) -> Listing:
    files = _images(root / "image", "Coverage image")
    masks = _by_stem(root / "mask", "forged")
    forged = [p for p in files if p.stem.endswith("t")]
    authentic = [p for p in files if not p.stem.endswith("t")]
    return _match(forged, lambda p: masks.get(p.stem[:-1]), authentic, what=f"coverage {root}")


NIST16_COLUMNS = ("ProbeFileName", "ProbeMaskFileName", "IsTarget")


def _nist16(root: Path, csv_path: Path | None) -> Listing:
    if csv_path is None:
        found = (
            sorted(
                path
                for path in (root / "reference" / "manipulation").glob("*manipulation-ref.csv")
                if not is_hidden(path)
            )
            if (root / "reference" / "manipulation").is_dir()
            else []
        )
        if not found:
            raise FileNotFoundError(
                f"no NIST16 manipulation reference CSV under {root}/reference/manipulation "
                "(pass --data.csv)"
            )
        csv_path = found[0]
    text = read_text(csv_path, "NIST16 reference CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="|")
    missing = [c for c in NIST16_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(
            f"NIST16 CSV {csv_path} lacks the columns {missing} "
            f"(pipe-separated, with {', '.join(NIST16_COLUMNS)})"
        )
    rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if any(row.get(column) is None for column in NIST16_COLUMNS):
            raise ValueError(
                f"NIST16 CSV {csv_path} line {number} has fewer fields than its header "
                f"(pipe-separated; {', '.join(NIST16_COLUMNS)} are needed)"
            )
    forged = [root / r["ProbeFileName"] for r in rows if r["IsTarget"].strip().upper() == "Y"]
    masks = {
        root / r["ProbeFileName"]: root / r["ProbeMaskFileName"]
        for r in rows
        if r["IsTarget"].strip().upper() == "Y" and r["ProbeMaskFileName"].strip()
    }
    authentic = [root / r["ProbeFileName"] for r in rows if r["IsTarget"].strip().upper() != "Y"]
    return _match(
        forged,
        lambda p: masks.get(p) if masks.get(p, Path("/nonexistent")).is_file() else None,
        authentic,
        invert=True,
        what=f"nist16 {csv_path}",
    )


def _folder(root: Path) -> Listing:
    masks = {**_by_stem(root / "Gt"), **{k: v for k, v in _by_stem(root / "Gt", "_gt").items()}}
    return _match(
        _images(root / "Tp", "folder Tp"),
        lambda p: masks.get(p.stem),
        _images(root / "Au", "folder Au", required=False),
        what=f"folder {root}",
    )


def _json(path: Path) -> Listing:
    pairs = read_json(path, "JSON list")
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise ValueError(
            f'{path} must hold a list of [image, mask] pairs (mask "Negative" = authentic)'
        )
    for number, pair in enumerate(pairs):
        if not all(isinstance(name, str) and name for name in pair):
            raise ValueError(
                f"{path}: entry {number} is {pair!r}; an image and a mask must be non-empty "
                'path strings (mask "Negative" = authentic)'
            )
    base = path.parent
    forged = [base / image for image, mask in pairs if mask != "Negative"]
    masks = {base / image: base / mask for image, mask in pairs if mask != "Negative"}
    authentic = [base / image for image, mask in pairs if mask == "Negative"]
    return _match(
        forged, lambda p: masks[p] if masks[p].is_file() else None, authentic, what=f"json {path}"
    )


def list_layout(
    layout: str,
    root: str | Path,
    gt_root: str | Path | None = None,
    csv_path: str | Path | None = None,
    columbia_channel: int = 1,
) -> Listing:
    """The records of a real data set layout (``casia1``, ``casia2``, ``columbia``, ``coverage``,
    ``nist16``, ``folder``, ``json``) under ``root``."""
    if layout not in LAYOUTS or layout == "synthetic":
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS[1:])}")
    if columbia_channel not in (0, 1, 2):
        raise ValueError(f"columbia_channel must be 0, 1 or 2 (R, G, B), got {columbia_channel}")
    root = Path(root)
    if layout != "json" and not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}")
    gt = Path(gt_root) if gt_root is not None else None
    if layout == "casia2":
        return _casia2(root, gt)
    if layout == "casia1":
        return _casia1(root, gt)
    if layout == "columbia":
        return _columbia(root, columbia_channel)
    if layout == "coverage":
        return _coverage(root)
    if layout == "nist16":
        return _nist16(root, Path(csv_path) if csv_path is not None else None)
    if layout == "folder":
        return _folder(root)
    return _json(root)


# -- datasets -----------------------------------------------------------------------------------
def _augment(image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
    """Flips and 90-degree rotations only (they keep every trace; spec section 1)."""
    turns = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    if flip:
        image, mask = image.flip(-1), mask.flip(-1)
    return image.rot90(turns, (-2, -1)), mask.rot90(turns, (-2, -1))


class ForgeryDataset(Dataset):
    """Items ``{image (3, H, W) in [0, 1], mask (1, H, W), valid, label, kind}`` of a
    :class:`ForgerySet` (or any uint8 images and masks)."""

    def __init__(self, forgeries: ForgerySet, augment: bool = False, seed: int = 0) -> None:
        self.forgeries = forgeries
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.forgeries)

    def __getitem__(self, index: int) -> dict:
        image = self.forgeries.images[index].float() / 255.0
        mask = self.forgeries.masks[index].float()
        if self.augment:
            image, mask = _augment(image, mask, self.generator)
        return {
            "image": image.contiguous(),
            "mask": mask.contiguous(),
            "valid": torch.ones_like(mask),
            "label": int(self.forgeries.labels[index]),
            "kind": self.forgeries.kinds[index],
        }


def pad_to_multiple(image: torch.Tensor, mask: torch.Tensor, multiple: int = 32):
    """Zero-pad bottom and right to a multiple; ``valid`` marks the real pixels."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    valid = F.pad(torch.ones_like(mask), (0, pw, 0, ph))
    return F.pad(image, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph)), valid


class RecordDataset(Dataset):
    """Real images read on demand: random ``crop`` patches (training) or whole images padded to a
    multiple of 32 (``pad``) or resized to ``eval_size`` (``resize``) for evaluation."""

    def __init__(
        self,
        records: Sequence[Record],
        train: bool,
        crop: int = 64,
        eval_mode: str = "pad",
        eval_size: int = 512,
        seed: int = 0,
    ) -> None:
        if eval_mode not in EVAL_MODES:
            raise ValueError(
                f"unknown eval_mode {eval_mode!r}; choose from {', '.join(EVAL_MODES)}"
            )
        if crop < 32 or crop % 32:
            raise ValueError(f"crop must be a multiple of 32, got {crop}")
        if eval_size < 32 or eval_size % 32:
            raise ValueError(f"eval_size must be a multiple of 32, got {eval_size}")
        self.records, self.train, self.crop = list(records), train, crop
        self.eval_mode, self.eval_size = eval_mode, eval_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        array, mask_array = load_record(record)
        image = torch.from_numpy(array).permute(2, 0, 1).float() / 255.0
        mask = torch.from_numpy(mask_array).unsqueeze(0).float()
        if self.train:
            image, mask, valid = pad_to_multiple(image, mask, self.crop)
            h, w = image.shape[-2:]
            top = 8 * int(
                torch.randint(0, (h - self.crop) // 8 + 1, (1,), generator=self.generator)
            )
            left = 8 * int(
                torch.randint(0, (w - self.crop) // 8 + 1, (1,), generator=self.generator)
            )
            window = (..., slice(top, top + self.crop), slice(left, left + self.crop))
            image, mask = _augment(image[window], mask[window], self.generator)
            valid = torch.ones_like(mask)
        elif self.eval_mode == "pad":
            image, mask, valid = pad_to_multiple(image, mask)
        else:
            size = (self.eval_size, self.eval_size)
            image = F.interpolate(
                image[None], size=size, mode="bilinear", antialias=True, align_corners=False
            )[0]
            mask = F.interpolate(mask[None], size=size, mode="nearest")[0]
            valid = torch.ones_like(mask)
        return {
            "image": image.contiguous(),
            "mask": mask.contiguous(),
            "valid": valid,
            "label": record.label,
            "kind": "forged" if record.label else "authentic",
        }


# -- datamodules --------------------------------------------------------------------------------
class SyntheticForgeryDataModule(L.LightningDataModule):
    """The generated set of spec section 3: ``num_train`` images of the train photographs (seed
    ``train_seed``) and ``num_test`` of the test photographs (``test_seed``)."""

    def __init__(
        self,
        num_train: int = 1600,
        num_test: int = 300,
        size: int = 64,
        batch_size: int = 16,
        train_seed: int = 0,
        test_seed: int = 1,
        seed: int = 0,
        augment: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_train", num_train),
            ("num_test", num_test),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.num_train, self.num_test, self.size = num_train, num_test, size
        self.batch_size, self.train_seed, self.test_seed, self.seed = (
            batch_size,
            train_seed,
            test_seed,
            seed,
        )
        self.augment, self.progress = augment, progress
        self.train_generator = ForgeryGenerator("train", size=size)
        self.test_generator = ForgeryGenerator("test", size=size)
        self.train_set: ForgerySet | None = None
        self.test_set: ForgerySet | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = self.train_generator.generate(
                self.num_train, self.train_seed, self.progress
            )
            self.test_set = self.test_generator.generate(
                self.num_test, self.test_seed, self.progress
            )

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(
            ForgeryDataset(self.train_set, self.augment, self.seed),
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(ForgeryDataset(self.test_set), batch_size=64)


class IMLDataModule(L.LightningDataModule):
    """A real layout under ``root``, split by image into train and test (``test_fraction``; 1.0
    = all for testing). Test batches hold one image (sizes differ) in ``pad`` mode. Every
    record's headers are checked when the module is built (:func:`check_records`)."""

    def __init__(
        self,
        layout: str,
        root: str | Path,
        gt_root: str | Path | None = None,
        csv_path: str | Path | None = None,
        columbia_channel: int = 1,
        crop: int = 64,
        batch_size: int = 16,
        test_fraction: float = 0.2,
        eval_mode: str = "pad",
        eval_size: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in (0, 1], got {test_fraction}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.listing = list_layout(layout, root, gt_root, csv_path, columbia_channel)
        records = self.listing.records
        check_records(records)  # headers of every file now, not mid-training
        order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
        num_test = (
            len(records) if test_fraction == 1.0 else max(1, round(test_fraction * len(records)))
        )
        if num_test >= len(records) and test_fraction < 1.0:
            raise ValueError(
                f"{len(records)} images are too few to split with test_fraction {test_fraction}"
            )
        self.test_records = [records[i] for i in order[:num_test]]
        self.train_records = [records[i] for i in order[num_test:]]
        self.crop, self.batch_size, self.seed = crop, batch_size, seed
        self.eval_mode, self.eval_size = eval_mode, eval_size
        RecordDataset([], True, crop, eval_mode, eval_size)  # checks the options now

    def train_dataloader(self) -> DataLoader:
        if not self.train_records:
            raise ValueError("test_fraction 1.0 leaves no training image")
        data = RecordDataset(
            self.train_records, True, self.crop, self.eval_mode, self.eval_size, self.seed
        )
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=False,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def test_dataloader(self) -> DataLoader:
        data = RecordDataset(
            self.test_records, False, self.crop, self.eval_mode, self.eval_size, self.seed
        )
        return DataLoader(data, batch_size=1 if self.eval_mode == "pad" else 8)
