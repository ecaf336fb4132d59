"""RGB-D SOD data: the standard folder layouts, depth reading and normalisation, a datamodule,
the procedural scenes (:mod:`paperzoo.hodinet.scenes`) and the motorcycle stereo pair.

Layouts (spec section 3), read only from roots the user passes:

- a *set folder* holds ``RGB/``, ``depth/``, ``GT/`` (aliases ``Image/``, ``depths/``, ``Mask/``,
  any case);
- BBS-Net trees: ``RGBD_for_train/`` and ``RGBD_for_test/<NAME>/``;
- CDINet trees: ``CDINet_train_data/`` and ``CDINet_test_data/<NAME>/``;
- or ``<root>/<NAME>/`` directly.

Files pair by stem (the core's ``paired_files``, which skips hidden names such as macOS ``._``
files). Pixels are read as stored: an EXIF orientation tag is not applied (the core's policy;
a warning names triples whose tags differ). Depth is read at full bit depth (16-bit PNGs
through PIL's ``I;16``/``I`` modes, pitfall 4), non-finite values and holes (stored 0) become 0,
and each map is min-max normalised to [0, 1] with near = 1; ``invert_depth='auto'`` inverts the
sets listed in ``DEPTH_INVERTED`` (DES stores far = bright, pitfall 3), holes staying 0. The
published training lists are used as they are, never re-split, and the test-only sets are never
training folders (pitfall 10).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from paperzoo.hodinet.scenes import KINDS, SyntheticRGBDScenes

__all__ = ["RGBDSODFolder", "RGBDSODDataModule", "SyntheticRGBDScenes", "motorcycle_demo",
           "normalize_depth", "read_depth", "read_gt", "find_set_folder", "TEST_SETS", "TEST_ONLY_SETS",
           "DEPTH_INVERTED", "KINDS"]

TEST_SETS = ("NJU2K", "NLPR", "STERE", "DES", "SIP", "LFSD", "SSD", "DUT-RGBD")
DEPTH_INVERTED = {"DES": True}  # per-set polarity: True when the files store far = bright
TEST_ONLY_SETS = ("STERE", "DES", "SIP", "LFSD", "SSD")  # never trained on (spec pitfall 10)
RGB_DIRS = ("rgb", "image", "images", "img", "imgs")
DEPTH_DIRS = ("depth", "depths")
GT_DIRS = ("gt", "mask", "masks")
RGB_EXTS = (".jpg", ".jpeg", ".png")
DEPTH_EXTS = (".png", ".bmp", ".jpg", ".tif", ".tiff")
GT_EXTS = (".png", ".jpg", ".bmp")
LAYOUT_HELP = ("expected a set folder with RGB/ (or Image/), depth/ (or depths/) and GT/ (or Mask/), "
               "a BBS-Net tree (RGBD_for_train/, RGBD_for_test/<NAME>/) or a CDINet tree "
               "(CDINet_train_data/, CDINet_test_data/<NAME>/)")


def _child(folder: Path, names: Sequence[str]) -> Path | None:
    if not folder.is_dir():
        return None
    wanted = {n.lower() for n in names}
    for path in sorted(folder.iterdir()):
        if path.is_dir() and path.name.lower() in wanted:
            return path
    return None


def _set_dirs(folder: Path) -> tuple[Path, Path, Path]:
    rgb, depth, gt = _child(folder, RGB_DIRS), _child(folder, DEPTH_DIRS), _child(folder, GT_DIRS)
    if rgb is None or depth is None or gt is None:
        missing = [n for n, p in (("RGB", rgb), ("depth", depth), ("GT", gt)) if p is None]
        raise FileNotFoundError(f"{folder}: no {', '.join(missing)} folder; {LAYOUT_HELP}")
    return rgb, depth, gt


def find_set_folder(root: str | Path, name: str | None = None) -> Path:
    """The set folder of test set ``name`` under ``root`` (or the training folder when ``name`` is
    None), in any of the supported layouts.

    A training folder named after a test-only set (STERE, DES, SIP, LFSD, SSD: spec pitfall 10)
    is refused: those sets have no training split.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found: {root}; {LAYOUT_HELP}")
    if name is None:
        candidates = [root / "RGBD_for_train", root / "CDINet_train_data", root / "train", root]
    else:
        candidates = [root / "RGBD_for_test" / name, root / "CDINet_test_data" / name, root / name,
                      root / "test" / name]
    for folder in candidates:
        if folder.is_dir() and all(_child(folder, d) is not None for d in (RGB_DIRS, DEPTH_DIRS, GT_DIRS)):
            if name is None and folder.resolve().name.upper() in TEST_ONLY_SETS:
                raise ValueError(f"{folder} is the test-only set {folder.resolve().name}; "
                                 f"{', '.join(TEST_ONLY_SETS)} are never trained on. Train on the "
                                 "published training lists (NJU2K + NLPR, + DUT-RGBD), e.g. a BBS-Net "
                                 "RGBD_for_train/ folder")
            return folder
    what = "training data" if name is None else f"test set {name!r}"
    raise FileNotFoundError(f"no {what} under {root}; {LAYOUT_HELP}")


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
COLOUR_SPREAD, COLOUR_FRACTION = 32, 0.01  # a pixel whose channels differ by more is coloured


def _opaque(image, path: Path, what: str):
    """``image`` in mode ``1``, ``L`` or ``RGB``: palettes expanded to their colours, an alpha
    channel dropped when fully opaque and refused otherwise (the core's ``check_opaque``:
    transparency could be the mask or the holes, which is not known), CMYK and the like
    converted to RGB."""
    from paperzoo.core.data import check_opaque

    try:
        check_opaque(image, path)
    except ValueError as error:
        raise ValueError(f"{what} {error} (mode {image.mode}, {len(image.getbands())} channels)") from None
    if image.mode in ("LA", "La"):
        return image.convert("L")
    return image if image.mode in ("1", "L", "RGB") else image.convert("RGB")


def _check_grey(array: np.ndarray, path: Path, what: str) -> None:
    """Refuse a 3-channel map whose channels differ (a colour-mapped depth or a colour mask); JPEG
    noise (a few pixels, small differences) is tolerated."""
    spread = array.max(axis=2).astype(np.int32) - array.min(axis=2)
    coloured = float((spread > COLOUR_SPREAD).mean())
    if coloured > COLOUR_FRACTION:
        raise ValueError(f"{what} image {path} is a colour image ({coloured:.0%} of its pixels have "
                         "unequal channels); expected 1 grey channel or 3 equal channels")


def read_gt(path: str | Path, threshold: float = 0.5) -> torch.Tensor:
    """A GT mask as a binary float32 ``(1, H, W)`` (1 = salient): the core's ``read_mask``
    (0/1 label maps; otherwise level / full scale > ``threshold``, the full scale 255, or 65535
    for a 16-bit file holding levels above 255). A colour mask (a VOC/DAVIS colour palette,
    unequal RGB channels) and a mask with transparent pixels (it may be the alpha channel) are
    refused naming the file. Grey palettes and 3 equal channels are grey."""
    from paperzoo.core.data import read_mask

    return read_mask(path, threshold)


def read_depth(path: str | Path) -> np.ndarray:
    """A depth map as float64 ``(H, W)`` at full bit depth, as stored (no EXIF orientation).

    8- or 16-bit grey (or 32-bit integer or float TIFF) files are read as stored; a palette
    file by its colours, not its indices; 3 channels must be equal (a colour-mapped
    visualisation is refused) and are averaged; a fully opaque alpha channel is dropped, a
    transparent one refused.
    """
    from paperzoo.core.data import open_image

    path = Path(path)
    image = open_image(path, "depth image")
    if image.mode in SIXTEEN_BIT_MODES:
        image = image.convert("I")
    elif image.mode not in ("I", "F", "L", "1"):
        image = _opaque(image, path, "depth")
    array = np.asarray(image).astype(np.float64)
    if array.ndim == 3:
        _check_grey(array, path, "depth")
        array = array.mean(axis=2)
    return array


def normalize_depth(depth: np.ndarray | torch.Tensor, invert: bool = False,
                    source: str = "depth") -> torch.Tensor:
    """NaN/inf/holes to 0, per-image min-max to [0, 1], ``1 - x`` when ``invert`` (so near = 1).

    Holes are non-finite pixels and pixels stored as 0 (no measurement). They enter the min-max
    as 0 and are 0 in the result whatever the polarity: an inverted map (``invert``, DES) does
    not turn them into the nearest pixels. A constant map becomes zeros, with a warning naming
    ``source``. Returns ``(1, H, W)`` float32.
    """
    array = depth.detach().cpu().double().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth, np.float64)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"{source}: depth must be a single-channel (H, W) map, got shape {array.shape}")
    array = np.where(np.isfinite(array), array, 0.0)
    holes = array == 0.0
    low, high = array.min(), array.max()
    if high <= low:
        warnings.warn(f"{source}: constant depth map, using zeros", stacklevel=2)
        return torch.zeros((1, *array.shape), dtype=torch.float32)
    array = (array - low) / (high - low)
    if invert:
        array = 1.0 - array
    array[holes] = 0.0
    return torch.from_numpy(array.astype(np.float32))[None]


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (size, size):
        return x
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x[None], size=(size, size), mode=mode, **kwargs)[0]


def augment(rgb: torch.Tensor, depth: torch.Tensor, gt: torch.Tensor, generator: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper preset's augmentation (spec section 1, reconstructed): the same horizontal flip,
    border crop and rotation on RGB, depth and GT (GT nearest), colour jitter on RGB only."""
    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator))

    if uniform(0, 1) < 0.5:
        rgb, depth, gt = rgb.flip(-1), depth.flip(-1), gt.flip(-1)
    h, w = rgb.shape[-2:]
    top, left = int(uniform(0, 0.1) * h), int(uniform(0, 0.1) * w)
    bottom, right = h - int(uniform(0, 0.1) * h), w - int(uniform(0, 0.1) * w)
    angle = uniform(-10, 10) * np.pi / 180 if uniform(0, 1) < 0.2 else 0.0
    theta = torch.tensor([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0]],
                         dtype=torch.float32)[None]

    def warp(x: torch.Tensor, mode: str) -> torch.Tensor:
        x = x[:, top:bottom, left:right]
        x = F.interpolate(x[None], size=(h, w), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)[0]

    rgb, depth, gt = warp(rgb, "bilinear"), warp(depth, "bilinear"), warp(gt, "nearest")
    grey = rgb.mean(dim=0, keepdim=True)
    rgb = rgb * uniform(0.9, 1.1)
    rgb = (rgb - rgb.mean()) * uniform(0.9, 1.1) + rgb.mean()
    rgb = grey + (rgb - grey) * uniform(0.9, 1.1)
    return rgb.clamp(0, 1), depth, gt


class RGBDSODFolder(Dataset):
    """One RGB-D SOD set folder: items ``(rgb, depth, gt, stem)`` resized to ``size``.

    Every RGB image must have a depth map and a GT of its stem, all three the same size (as
    stored; no EXIF orientation is applied, and a warning names triples whose orientation tags
    differ); this is checked from the file headers when the folder is opened, so a bad set
    fails before any training or scoring. GTs are read by :func:`read_gt`. ``full_gt(i)`` is the
    GT at its own resolution (scores are computed there, never at the network's input size).
    """

    def __init__(self, folder: str | Path, size: int = 64, invert_depth: str = "auto",
                 name: str | None = None, train: bool = False, seed: int = 0) -> None:
        from paperzoo.core.data import image_header, paired_files

        if invert_depth not in ("auto", "yes", "no"):
            raise ValueError(f"invert_depth must be auto, yes or no, got {invert_depth!r}")
        if size < 32:
            raise ValueError(f"size must be >= 32 pixels, got {size}")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"set folder not found: {self.folder}; {LAYOUT_HELP}")
        self.name = name or self.folder.name
        rgb_dir, depth_dir, gt_dir = _set_dirs(self.folder)
        try:
            with_depth = paired_files(rgb_dir, depth_dir, RGB_EXTS + tuple(e for e in DEPTH_EXTS if e not in RGB_EXTS))
            with_gt = paired_files(rgb_dir, gt_dir, RGB_EXTS + tuple(e for e in GT_EXTS if e not in RGB_EXTS))
        except ValueError as error:
            raise ValueError(f"{self.folder}: {error}") from error
        depth_of = {a.stem: b for a, b in with_depth}
        gt_of = {a.stem: b for a, b in with_gt}
        self.items = [(a, depth_of[a.stem], gt_of[a.stem]) for a, _ in with_depth]
        turned = []
        for rgb_path, depth_path, gt_path in self.items:
            rgb_size, rgb_tag = image_header(rgb_path, "RGB image")
            depth_size, depth_tag = image_header(depth_path, "depth image")
            gt_size, gt_tag = image_header(gt_path, "GT image")
            tags = (rgb_tag, depth_tag, gt_tag)
            exif = (f" (EXIF orientations RGB {tags[0]}, depth {tags[1]}, GT {tags[2]}; pixels are "
                    "read as stored, no tag is applied)") if len(set(tags)) > 1 else ""
            for other, path, other_size in (("depth", depth_path, depth_size), ("GT", gt_path, gt_size)):
                if other_size != rgb_size:
                    raise ValueError(f"RGB {rgb_path} is {rgb_size[0]}x{rgb_size[1]} but {other} {path} "
                                     f"is {other_size[0]}x{other_size[1]}{exif}")
            if exif:
                turned.append(f"{rgb_path.stem}{exif}")
        if turned:
            warnings.warn(f"{self.folder}: {len(turned)} RGB/depth/GT triples carry different EXIF "
                          f"orientations, e.g. {turned[0]}: check that they align", stacklevel=2)
        self.size = size
        inverted = DEPTH_INVERTED.get(self.name.upper(), False)
        self.invert = invert_depth == "yes" or (invert_depth == "auto" and inverted)
        self.train = train
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def stems(self) -> list[str]:
        return [rgb.stem for rgb, _, _ in self.items]

    def full_gt(self, index: int) -> torch.Tensor:
        return read_gt(self.items[index][2])

    def __getitem__(self, index: int):
        from paperzoo.core.data import read_image

        rgb_path, depth_path, gt_path = self.items[index]
        rgb = _resize(read_image(rgb_path), self.size, "bilinear")
        depth = _resize(normalize_depth(read_depth(depth_path), self.invert, str(depth_path)), self.size, "bilinear")
        gt = _resize(self.full_gt(index), self.size, "nearest")
        if self.train:
            rgb, depth, gt = augment(rgb, depth, gt, self.generator)
        return rgb, depth, gt, rgb_path.stem


def _collate(batch):
    rgb, depth, gt, names = zip(*batch)
    return torch.stack(rgb), torch.stack(depth), torch.stack(gt), list(names)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A single-process DataLoader whose shuffling follows ``seed``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last and len(dataset) >= batch_size, collate_fn=_collate)


class RGBDSODDataModule:
    """Training folder plus named test sets of one data root, in any supported layout.

    A plain object (no Lightning import) with ``train_dataloader()`` and ``test_sets()``; the
    module and the pipeline consume it.
    """

    def __init__(self, root: str | Path, test_sets: Sequence[str] = TEST_SETS, size: int = 64,
                 batch_size: int = 8, invert_depth: str = "auto", seed: int = 0,
                 augment_train: bool = True) -> None:
        self.root, self.size, self.batch_size, self.seed = Path(root), size, batch_size, seed
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.invert_depth, self.augment_train = invert_depth, augment_train
        self.test_names = list(test_sets)

    def train_set(self) -> RGBDSODFolder:
        folder = find_set_folder(self.root)
        return RGBDSODFolder(folder, self.size, self.invert_depth, train=self.augment_train, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        return make_loader(self.train_set(), self.batch_size, shuffle=True, seed=self.seed, drop_last=True)

    def test_sets(self, missing_ok: bool = True) -> dict[str, RGBDSODFolder]:
        """The test sets found under the root (absent ones skipped when ``missing_ok``)."""
        found = {}
        for name in self.test_names:
            try:
                folder = find_set_folder(self.root, name)
            except FileNotFoundError:
                if missing_ok:
                    continue
                raise
            found[name] = RGBDSODFolder(folder, self.size, self.invert_depth, name=name)
        if not found:
            raise FileNotFoundError(f"none of the test sets {self.test_names} under {self.root}; {LAYOUT_HELP}")
        return found


def motorcycle_demo(size: int = 64) -> tuple[torch.Tensor, torch.Tensor] | None:
    """scikit-image's stereo motorcycle as ``(rgb (3,S,S), depth (1,S,S))``: the left view and its
    disparity (inf -> 0, normalised, near = high). No mask: an inference smoke test only. Returns
    ``None`` when the bundled file is not available."""
    try:
        from skimage import data

        left, _, disparity = data.stereo_motorcycle()
    except Exception:  # the file is optional in some scikit-image installs
        return None
    rgb = torch.from_numpy(np.asarray(left, np.float32) / 255.0).permute(2, 0, 1)
    depth = normalize_depth(disparity, invert=False, source="stereo_motorcycle disparity")
    return _resize(rgb, size, "bilinear"), _resize(depth, size, "bilinear")
