"""Datasets of the CAFE experiments, read only from a root the user passes (nothing downloads).

- ``digits``: scikit-learn's 8 x 8 digits in [0, 1] (offline; the validation data).
- ``mnist``: IDX files (``train-images-idx3-ubyte[.gz]`` ...) in the root, ``raw/`` or
  torchvision's ``MNIST/raw`` folder below it (the core's :func:`paperzoo.core.data.mnist`).
- ``cifar10``: the python pickle batches (``cifar-10-batches-py/data_batch_1..5``,
  ``test_batch``), read by the core's :func:`paperzoo.core.data.cifar10` with an unpickler that
  only admits the numpy types those files contain.
- ``linnaeus5``: class-folder JPEGs (``train/<class>/*.jpg``, ``test/<class>/*.jpg``), resized.

Every loader returns float images ``(N, C, H, W)`` in [0, 1] and int64 labels ``(N,)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from paperzoo.core.data import cifar10, mnist

DATASETS = ("digits", "mnist", "cifar10", "linnaeus5")
CIFAR_CLASSES = 10


def load_linnaeus5(root: str | Path, split: str = "train", size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Linnaeus 5 (class-folder JPEGs), resized to ``size x size``; labels by sorted class name."""
    from paperzoo.core.data import IMAGE_EXTENSIONS, read_image

    root = _root(root)
    folder = root / _split(split) if (root / _split(split)).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((folder / name).iterdir()) if path.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise FileNotFoundError(f"Linnaeus 5 root {root} has no class folders of images in {folder}; "
                                "expected train/<class>/*.jpg and test/<class>/*.jpg")
    images = []
    for path, _ in files:
        image = read_image(path, mode="RGB").unsqueeze(0)
        image = torch.nn.functional.interpolate(image, size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)
        images.append(image.clamp(0, 1))
    return torch.cat(images), torch.tensor([label for _, label in files], dtype=torch.int64)


def _root(root: str | Path | None) -> Path:
    if root is None or str(root) == "":
        raise ValueError("this dataset is read from a local folder: pass --root DIR (nothing is downloaded)")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} is not a folder")
    return root


def _split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_dataset(name: str = "digits", root: str | Path | None = None, split: str = "train",
                 size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of a dataset (``digits`` ignores ``root`` and ``split``)."""
    if name == "digits":
        from paperzoo.core.data import digits

        return digits()
    if name == "mnist":
        return mnist(_root(root), _split(split))
    if name == "cifar10":
        return cifar10(_root(root), _split(split))
    if name == "linnaeus5":
        return load_linnaeus5(root, split, size)
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def attack_subset(images: torch.Tensor, labels: torch.Tensor, n_samples: int,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of ``n_samples`` training samples (the data the VFL run uses)."""
    if not 1 <= n_samples <= len(images):
        raise ValueError(f"n_samples must be between 1 and the dataset size {len(images)}, got {n_samples}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:n_samples]
    return images[order].contiguous(), labels[order].contiguous()
