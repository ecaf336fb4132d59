"""Datasets of the CAFE experiments, read only from a root the user passes (nothing downloads).

- ``digits``: scikit-learn's 8 x 8 digits in [0, 1] (offline; the validation data).
- ``mnist``: IDX files (``train-images-idx3-ubyte[.gz]`` ...) in the root, ``raw/`` or
  torchvision's ``MNIST/raw`` folder below it (the core's :func:`paperzoo.core.data.mnist`).
- ``cifar10``: the python pickle batches (``cifar-10-batches-py/data_batch_1..5``,
  ``test_batch``), read by the core's :func:`paperzoo.core.data.cifar10` with an unpickler that
  only admits the numpy types those files contain.
- ``linnaeus5``: class-folder JPEGs (``train/<class>/*.jpg``, ``test/<class>/*.jpg``), resized;
  read by :func:`read_user_image` (EXIF orientation applied, 16-bit grey scaled by 1/65535,
  float images taken in [0, 1], transparent images and wider ranges refused: the core's reader);
  hidden entries (``.DS_Store``, ``._name``,
  ``.cache``) are skipped and an empty class folder is refused.
- ``npz:FILE``: the user's own arrays in a NumPy ``.npz`` file: ``x`` (``(N, D)`` tabular
  features, standardised, or ``(N, C, H, W)`` channels-first images) and ``y`` (``(N,)``
  integer labels; whole-number floats such as ``1.0`` are taken as integers). Any real values
  are accepted, but the attack recovers features on a large scale poorly (relative L2 0.95 at
  scale 100 against 0.01 standardised, README): standardise each feature (zero mean, unit
  variance) first. Channels-last ``(N, H, W, C)`` images are
  refused (:func:`check_channels_first`).

The built-in loaders return float images ``(N, C, H, W)`` in [0, 1]; every loader returns int64
labels ``(N,)``. :func:`data_value_range` gives the value range the attacker assumes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from paperzoo.core.data import cifar10, is_hidden, mnist

DATASETS = ("digits", "mnist", "cifar10", "linnaeus5")
CIFAR_CLASSES = 10


def read_user_image(path: str | Path) -> torch.Tensor:
    """A user's image as float ``(3, H, W)`` in [0, 1], upright by its EXIF orientation: the
    core's ``read_image(..., upright=True)`` (8-bit over 255, 16-bit over 65535, float in
    [0, 1]; an opaque alpha band dropped; transparent pixels, wider ranges and unreadable files
    a ValueError naming the file)."""
    from paperzoo.core.data import read_image

    return read_image(path, "RGB", upright=True)


def load_linnaeus5(root: str | Path, split: str = "train", size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Linnaeus 5 (class-folder JPEGs), resized to ``size x size``; labels by sorted class name
    (hidden entries skipped; an empty class folder is refused, naming it)."""
    from paperzoo.core.data import IMAGE_EXTENSIONS

    root = _root(root)
    folder = root / _split(split) if (root / _split(split)).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p))
    files = []
    for label, name in enumerate(classes):
        found = [(path, label) for path in sorted((folder / name).iterdir())
                 if path.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(path) and path.is_file()]
        if not found:
            raise ValueError(f"Linnaeus 5 class folder {folder / name} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)}); the labels follow the sorted class "
                             "folders, so remove it or fill it")
        files += found
    if not files:
        raise FileNotFoundError(f"Linnaeus 5 root {root} has no class folders of images in {folder}; "
                                "expected train/<class>/*.jpg and test/<class>/*.jpg")
    images = []
    for path, _ in files:
        image = read_user_image(path).unsqueeze(0)
        image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)
        images.append(image.clamp(0, 1))
    return torch.cat(images), torch.tensor([label for _, label in files], dtype=torch.int64)


def _root(root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        raise ValueError("this dataset is read from a local folder: pass --scenario.root DIR (root= in Python; nothing is downloaded)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    return root


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


NPZ_LAYOUT = "an .npz file (numpy.savez) with x (N, D) or (N, C, H, W) and y (N,) integer labels"


def check_channels_first(sample_shape: tuple[int, ...], what: str = "x") -> None:
    """Refuses images that look channels-last: one sample ``(H, W, C)`` with ``C`` 1 or 3 and a
    leading size over 4 (which no 1- or 3-channel image has as its channel count). Read as
    ``(C, H, W)`` they would give a misleading partition error or, when the sizes divide, a
    silent misread."""
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) == 3 and shape[-1] in (1, 3) and shape[0] > 4:
        height, width, channels = shape
        raise ValueError(f"{what} looks channels-last: each sample is {shape}, i.e. (H, W, C) = "
                         f"({height}, {width}, {channels}), but images must be channels-first "
                         f"(N, C, H, W), here (N, {channels}, {height}, {width}); transpose them "
                         f"first: x = x.transpose(0, 3, 1, 2) (NumPy) or x.permute(0, 3, 1, 2) (torch)")


def _whole_number_labels(labels, what: str = "y"):
    """Float labels as int64 when every value is a whole number (``0.0, 1.0, 2.0``, as pandas and
    NumPy often write them); a NaN, infinite or fractional value is a ValueError naming ``what``,
    the first such position and its value."""
    import numpy as np

    labels = np.asarray(labels)
    whole = np.isfinite(labels) & (labels == np.round(labels)) & (np.abs(labels) <= 2**53)
    if not whole.all():
        index = int(np.flatnonzero(~whole)[0])
        raise ValueError(f"{what} must hold integer labels; value {float(labels[index])!r} at index "
                         f"{index} is not a whole number")
    return labels.astype(np.int64)


def load_npz(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``x`` (``(N, D)`` or ``(N, C, H, W)``) and ``y`` (``(N,)`` integers, or floats
    that are all whole numbers) from an ``.npz`` file, read by the core's
    :func:`paperzoo.core.data.read_npz` (without unpickling):
    a file that is not an ``.npz`` archive (a bare ``.npy``, a pickle), object arrays and a
    missing ``x`` or ``y`` are refused with an error naming the file."""
    import numpy as np

    from paperzoo.core.data import read_npz

    path = Path(path)
    try:
        arrays = read_npz(path, required=("x", "y"), what="npz file")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{error}; expected {NPZ_LAYOUT}") from error
    except ValueError as error:
        raise ValueError(f"{error}; expected {NPZ_LAYOUT}") from error
    x, y = np.asarray(arrays["x"]), np.asarray(arrays["y"])
    if x.ndim not in (2, 4):
        raise ValueError(f"{path}: x must be (N, D) features or (N, C, H, W) images, got shape {x.shape}")
    if x.ndim == 4:
        check_channels_first(x.shape[1:], f"{path}: x {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{path}: x and y hold no samples")
    if np.iscomplexobj(x):
        raise ValueError(f"{path}: x must be real numbers, got {x.dtype}")
    if y.shape == (len(x),) and np.issubdtype(y.dtype, np.floating):
        y = _whole_number_labels(y, f"{path}: y")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise ValueError(f"{path}: y must be {len(x)} non-negative integer labels, got shape {y.shape} "
                         f"of {y.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        features = torch.from_numpy(x.astype(np.float32))
    if not bool(torch.isfinite(features).all()):
        raise ValueError(f"{path}: x holds NaN or infinite values (in float32: values beyond "
                         f"3.4e38 overflow); clean or rescale them first")
    return features.contiguous(), torch.from_numpy(y.astype(np.int64))


def data_value_range(name: str, x: torch.Tensor) -> tuple[float, float]:
    """The value range the attacker assumes: ``[0, 1]`` for the built-in image datasets (the
    image range is public), the array's own minimum and maximum for ``npz:`` data."""
    if not name.startswith("npz:"):
        return 0.0, 1.0
    low, high = float(x.min()), float(x.max())
    return (low, high) if high > low else (low - 0.5, high + 0.5)


def load_dataset(name: str = "digits", root: str | Path | None = None, split: str = "train",
                 size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples and labels of a dataset (``digits`` and ``npz:FILE`` ignore ``root`` and
    ``split``)."""
    if name.startswith("npz:"):
        return load_npz(name[len("npz:"):])
    if name == "digits":
        from paperzoo.core.data import digits

        return digits()
    if name == "mnist":
        return mnist(_root(root), _split(split))
    if name == "cifar10":
        return cifar10(_root(root), _split(split))
    if name == "linnaeus5":
        return load_linnaeus5(root, split, size)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)} or npz:FILE")


def attack_subset(images: torch.Tensor, labels: torch.Tensor, n_samples: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``n_samples`` training samples (the data the VFL run uses)."""
    if not 1 <= n_samples <= len(images):
        raise ValueError(f"n_samples must be between 1 and the dataset size {len(images)}, got {n_samples}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:n_samples]
    return images[order].contiguous(), labels[order].contiguous()
