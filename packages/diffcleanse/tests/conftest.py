"""Shared fixtures: one torch thread, untrained micro/tiny UNets, dataset fixture trees."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)


@pytest.fixture
def micro():
    from paperzoo.diffcleanse.model import create_model

    torch.manual_seed(0)
    return create_model("micro").eval()


def write_cifar(root: Path, n: int = 4) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with (folder / name).open("wb") as handle:
            pickle.dump(
                {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"labels": [0] * n},
                handle,
            )
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump({b"label_names": [b"airplane"]}, handle)
    return root


def write_folder(folder: Path, n: int = 3, size: tuple[int, int] = (20, 20)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    return folder


def write_celeba(root: Path) -> Path:
    write_folder(root / "img_align_celeba", 3, (218, 178))
    names = sorted(p.name for p in (root / "img_align_celeba").iterdir())
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{n} {i % 2}" for i, n in enumerate(names))
    )
    return root
