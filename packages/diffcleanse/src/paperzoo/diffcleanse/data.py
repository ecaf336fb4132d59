"""Training images in model space [-1, 1] (spec 3): the core's digits (offline, upsampled to the
model size), CIFAR-10's python batches, a flat image folder (CelebA-HQ), CelebA's aligned
layout, the user's own arrays (``npz:FILE``), and a suspect model's own samples
(``SyntheticData``, the default fine-tune data of spec 1.3).

``load_images(source, size, channels)`` reads any of them by a string: ``digits``,
``cifar10:ROOT``, ``folder:DIR``, ``celeba:ROOT``, ``npz:FILE``.

Image files (``.png .jpg .jpeg .bmp .tif .tiff .webp``, any case) are read by ``read_user_image``:
the EXIF orientation is applied, 16-bit grey is scaled by 1/65535, grey/palette/CMYK become RGB,
an alpha channel is dropped only when fully opaque (any transparency is refused), float images
are taken in [0, 1] and wider ranges refused (the core's reader); folder walks skip hidden files (``.DS_Store``, ``._name``).

Ranges: files hold pixels in [0, 1] (float), [0, 255] (uint8, scaled by 1/255) or [0, 65535]
(uint16, scaled by 1/65535, as the core reads 16-bit image files); everything
returned here, and every image tensor the library's functions take, is in model space [-1, 1].
``check_range`` refuses values outside the expected range (beyond float rounding,
``RANGE_TOLERANCE``) rather than clamping them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

__all__ = [
    "digits_images",
    "DigitsData",
    "Cifar10Data",
    "ImageFolderData",
    "CelebAData",
    "SyntheticData",
    "NpzData",
    "load_images",
    "check_range",
    "IMAGE_SUFFIXES",
    "RANGE_TOLERANCE",
    "read_user_image",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RANGE_TOLERANCE = 1e-4  # float rounding around the range's ends; beyond it values are refused


def _range_hint(low: float, high: float, found_low: float, found_high: float) -> str:
    """How to map a common range that was found onto the expected one."""
    tol = RANGE_TOLERANCE
    eight_bit = found_low >= -tol and 1.0 + tol < found_high <= 255.0 + tol
    if (low, high) == (0.0, 1.0):
        if eight_bit:
            return "; values up to 255 look like 8-bit pixels: divide by 255 (or store uint8)"
        if found_low >= -tol and 255.0 + tol < found_high <= 65535.0 + tol:
            return "; values up to 65535 look like 16-bit pixels: divide by 65535 (or store uint16)"
        if -1.0 - tol <= found_low < -tol and found_high <= 1.0 + tol:
            return "; values in [-1, 1] look like model space: map them with (x + 1) / 2"
    if (low, high) == (-1.0, 1.0) and eight_bit:
        return "; values up to 255 look like 8-bit pixels: map them with x / 127.5 - 1"
    return ""


def check_range(
    images: torch.Tensor, low: float, high: float, name: str = "images", also: str = ""
) -> torch.Tensor:
    """Refuse non-finite values and values outside ``[low, high]`` (beyond ``RANGE_TOLERANCE``)
    with a ValueError naming ``name``, the range found and the range expected (``also``: words
    after it, e.g. another accepted form); returns ``images``, clamped to ``[low, high]`` where
    float rounding left them just outside."""
    expected = f"[{low:g}, {high:g}]" + (f" {also}" if also else "")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name}: non-finite values, expected {expected}")
    found_low, found_high = float(images.min()), float(images.max())
    if found_low < low - RANGE_TOLERANCE or found_high > high + RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: values in [{found_low:.4g}, {found_high:.4g}], expected {expected}"
            + _range_hint(low, high, found_low, found_high)
        )
    return images.clamp(low, high) if found_low < low or found_high > high else images


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)


def digits_images(size: int = 16, with_labels: bool = False):
    """The core's 1,797 digits at ``size`` px (8: native; 16: upsampled x2), in [-1, 1]."""
    from paperzoo.core.data import digits

    if size < 4:
        raise ValueError(f"digits size must be >= 4, got {size}")
    images, labels = digits()
    images = _resize(images, size) * 2 - 1
    return (images, labels) if with_labels else images


def _to_model_space(
    images: torch.Tensor, size: int | None, channels: int | None, source: str, resize: bool = True
) -> torch.Tensor:
    if channels is not None and images.shape[1] != channels:
        if images.shape[1] == 3 and channels == 1:
            images = images.mean(1, keepdim=True)
        elif images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            hint = ""
            if images.shape[-1] in (1, 3) and images.shape[1] > 4:  # (N, H, W, C) read as NCHW
                hint = (
                    f"; shape {tuple(images.shape)} looks channels-last (N, H, W, C): store "
                    "(N, C, H, W), e.g. x.transpose(0, 3, 1, 2)"
                )
            raise ValueError(
                f"{source}: images have {images.shape[1]} channels, the model needs {channels}"
                f"{hint}"
            )
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        if not resize:
            raise ValueError(
                f"{source}: images are {tuple(images.shape[-2:])}, the model needs {size}x{size}; pass --resize"
            )
        images = _resize(images, size)
    return (images.clamp(0, 1) * 2 - 1).contiguous()


class DigitsData(TensorDataset):
    """Digits as a dataset of single tensors in [-1, 1]."""

    def __init__(self, size: int = 16) -> None:
        super().__init__(digits_images(size))
        self.images = self.tensors[0]


class Cifar10Data(TensorDataset):
    """CIFAR-10 python batches: ``ROOT/cifar-10-batches-py/data_batch_1..5`` (+ ``test_batch``)."""

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        size: int | None = 32,
        channels: int | None = 3,
        resize: bool = False,
    ) -> None:
        # the core's reader: a restricted unpickler (a tampered batch cannot run code) and
        # errors naming the file and the shape
        from paperzoo.core.data import cifar10

        folder = Path(root)
        if (folder / "cifar-10-batches-py").is_dir():
            folder = folder / "cifar-10-batches-py"
        images, _ = cifar10(folder, "train" if train else "test")
        self.images = _to_model_space(images, size, channels, str(folder), resize)
        super().__init__(self.images)


def read_user_image(path: str | Path) -> torch.Tensor:
    """A user's image file as float ``(3, H, W)`` in [0, 1], upright by its EXIF orientation:
    the core's ``read_image(..., upright=True)`` (8-bit over 255, 16-bit over 65535, float in
    [0, 1]; an opaque alpha band dropped; transparent pixels, wider ranges and unreadable files
    a ValueError naming the file)."""
    from paperzoo.core.data import read_image

    return read_image(path, "RGB", upright=True)


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, any case), sorted; hidden files (``.DS_Store``,
    macOS's ``._name``) and folders are skipped."""
    from paperzoo.core.data import is_hidden

    return sorted(
        f
        for f in folder.iterdir()
        if f.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(f) and f.is_file()
    )


def _read_folder(files: list[Path], source: str) -> list[torch.Tensor]:
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
    return [read_user_image(f) for f in files]


def _stack(images: list[torch.Tensor], size: int | None, source: str, resize: bool) -> torch.Tensor:
    shapes = {tuple(i.shape[-2:]) for i in images}
    if len(shapes) > 1 and size is None:
        raise ValueError(f"{source}: images of different sizes {sorted(shapes)[:3]}; give a size")
    if size is not None:
        if any(s != (size, size) for s in shapes) and not resize:
            raise ValueError(
                f"{source}: images are {sorted(shapes)[0]}, the model needs {size}x{size}; pass --resize"
            )
        images = [_resize(i[None], size)[0] for i in images]
    channels = max(i.shape[0] for i in images)
    return torch.stack([i.expand(channels, -1, -1) if i.shape[0] == 1 else i for i in images])


class ImageFolderData(TensorDataset):
    """A flat folder of images (e.g. CelebA-HQ); images of another size than ``size`` are refused
    unless ``resize``."""

    def __init__(
        self,
        folder: str | Path,
        size: int | None = None,
        channels: int | None = None,
        resize: bool = False,
        limit: int | None = None,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        files = image_files(folder)[:limit]
        images = _stack(_read_folder(files, str(folder)), size, str(folder), resize)
        self.images = _to_model_space(images, size, channels, str(folder), resize)
        super().__init__(self.images)


class CelebAData(TensorDataset):
    """CelebA aligned: ``ROOT/img_align_celeba/*.jpg`` + ``ROOT/list_eval_partition.txt`` (UTF-8,
    a byte-order mark dropped; other encodings refused naming the file); centre crop 140, resize
    to ``size`` (64) [reconstructed]. ``split``: 0 train, 1 val, 2 test."""

    def __init__(
        self,
        root: str | Path,
        size: int = 64,
        split: int = 0,
        channels: int | None = 3,
        limit: int | None = None,
    ) -> None:
        from paperzoo.core.data import read_text

        root = Path(root)
        listing, image_dir = root / "list_eval_partition.txt", root / "img_align_celeba"
        for path in (listing, image_dir):
            if not path.exists():
                raise FileNotFoundError(f"CelebA file not found: {path}")
        names = [
            line.split()[0]
            for line in read_text(listing, "CelebA partition list").splitlines()
            if len(line.split()) == 2 and line.split()[1] == str(split)
        ][:limit]
        images = []
        for name in names:
            path = image_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"CelebA image listed but missing: {path}")
            image = read_user_image(path)
            h, w = image.shape[-2:]
            crop = min(140, h, w)
            top, left = (h - crop) // 2, (w - crop) // 2
            images.append(_resize(image[None, :, top : top + crop, left : left + crop], size)[0])
        if not images:
            raise FileNotFoundError(f"no CelebA images of split {split} listed in {listing}")
        self.images = _to_model_space(torch.stack(images), size, channels, str(root))
        super().__init__(self.images)


class NpzData(TensorDataset):
    """The user's own array: ``FILE.npz`` with ``images`` (N, C, H, W) or (N, H, W), uint8 in
    [0, 255] (scaled by 1/255), uint16 in [0, 65535] (scaled by 1/65535, like the core's 16-bit
    images) or any other numbers in [0, 1]; other values (e.g. [-1, 1] or float [0, 255]) are a
    ValueError naming the file and the range found, never clamped."""

    def __init__(
        self,
        path: str | Path,
        size: int | None = None,
        channels: int | None = None,
        resize: bool = False,
    ) -> None:
        from paperzoo.core.data import read_npz

        path = Path(path)
        # the core's reader: a bare .npy, a pickle, object arrays or a missing key are refused
        # naming the file
        array = read_npz(path, required=("images",), what="npz images file")["images"]
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: images must be numbers, got dtype {array.dtype}")
        if array.ndim == 3:
            array = array[:, None]
        if array.ndim != 4:
            raise ValueError(f"{path}: images must be (N, C, H, W) or (N, H, W), got {array.shape}")
        if 0 in array.shape:
            raise ValueError(f"{path}: images array is empty, shape {array.shape}")
        if array.dtype == np.uint8:
            images = torch.as_tensor(array.astype(np.float32) / 255.0)
        elif array.dtype.kind == "u" and array.dtype.itemsize == 2:  # either byte order
            images = torch.as_tensor((array.astype(np.float64) / 65535.0).astype(np.float32))
        else:
            images = check_range(
                torch.as_tensor(array.astype(np.float32)),
                0.0,
                1.0,
                f"{path}: {array.dtype} images",
                "(or uint8 in [0, 255], uint16 in [0, 65535])",
            )
        self.images = _to_model_space(images, size, channels, str(path), resize)
        super().__init__(self.images)


class SyntheticData(TensorDataset):
    """``n`` samples of a (suspect) model from clean noise: the fine-tune data that needs no clean
    data set (spec 1.3, ``ft_data="samples"``)."""

    def __init__(
        self,
        unet,
        n: int = 512,
        steps: int = 25,
        seed: int = 0,
        scheduler_config: dict | None = None,
    ) -> None:
        from paperzoo.diffcleanse.sampling import sample

        if n < 2:
            raise ValueError(f"n must be >= 2, got {n}")
        self.images = sample(
            unet,
            n,
            steps=steps,
            scheduler_config=scheduler_config,
            generator=torch.Generator().manual_seed(seed),
        ).clamp(-1, 1)
        super().__init__(self.images)


def load_images(
    source: str, size: int, channels: int = 1, resize: bool = False, option: str | None = None
) -> torch.Tensor:
    """Images ``(N, C, size, size)`` in [-1, 1] from a source string (see the module doc).

    Images of another size are refused unless ``resize`` (spec 6); ``digits`` (rendered at the
    model's size by the package) and ``celeba`` (the spec's crop 140 + resize recipe) always fit.
    ``option`` (e.g. ``--data``) names the option that gave ``source`` in the error that refuses
    digits for a model of more than one channel."""
    kind, _, path = source.partition(":")
    if kind == "digits":
        if channels != 1:
            sources = "npz:FILE, folder:DIR, cifar10:ROOT or celeba:ROOT"
            raise ValueError(
                f"{option} digits: digits are 1-channel, the model needs {channels}; pass "
                f"{option} {sources} with images like the model's"
                if option
                else f"digits are 1-channel, the model needs {channels}; use {sources}"
            )
        return digits_images(size)
    if not path:
        raise ValueError(
            f"data source {source!r} needs a path: digits, cifar10:ROOT, folder:DIR, celeba:ROOT, npz:FILE"
        )
    if kind == "cifar10":
        return Cifar10Data(path, size=size, channels=channels, resize=resize).images
    if kind == "folder":
        return ImageFolderData(path, size=size, channels=channels, resize=resize).images
    if kind == "celeba":
        return CelebAData(path, size=size, channels=channels).images
    if kind == "npz":
        return NpzData(path, size=size, channels=channels, resize=resize).images
    raise ValueError(
        f"unknown data source {source!r}; use digits, cifar10:ROOT, folder:DIR, celeba:ROOT, npz:FILE"
    )


def as_dataset(images: torch.Tensor) -> Dataset:
    return TensorDataset(images)
