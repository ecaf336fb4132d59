"""Shared fixtures: one torch thread, untrained micro/tiny UNets, dataset fixture trees, the
``placed`` spy of the device the UNet is evaluated on."""

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


class Placed(list):
    """The device each UNet evaluation outside a Lightning fit found its UNet explicitly placed on."""

    def check(self, device: str) -> None:
        assert self, "no UNet evaluation outside Lightning was seen"
        assert set(self) == {device}, (
            f"UNet evaluated off the requested device {device}: {sorted(map(str, set(self)))}"
        )


@pytest.fixture
def placed(monkeypatch):
    """A spy for ``--device``: records the device of a ``UNet2DModel``'s last ``.to(device)``; any
    other move (``.cpu()``, Lightning moving or tearing down the module that holds it) clears it.
    Every UNet evaluation outside a Lightning fit appends what it finds (``placed.check(device)``)."""
    from diffusers import UNet2DModel

    import paperzoo.diffcleanse.pipeline as pipeline

    seen = Placed()
    fitting = [False]
    original_to, original_apply = UNet2DModel.to, UNet2DModel._apply
    original_forward, original_fit = UNet2DModel.forward, pipeline._fit

    def to(self, *args, **kwargs):
        before = self.__dict__.get("_spy_device")
        out = original_to(self, *args, **kwargs)
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        self.__dict__["_spy_device"] = str(device) if device is not None else before
        return out

    def _apply(self, fn, *args, **kwargs):
        self.__dict__["_spy_device"] = None
        return original_apply(self, fn, *args, **kwargs)

    def forward(self, *args, **kwargs):
        if not fitting[0]:
            seen.append(self.__dict__.get("_spy_device"))
        return original_forward(self, *args, **kwargs)

    def fit(*args, **kwargs):
        fitting[0] = True
        try:
            return original_fit(*args, **kwargs)
        finally:
            fitting[0] = False

    monkeypatch.setattr(UNet2DModel, "to", to)
    monkeypatch.setattr(UNet2DModel, "_apply", _apply)
    monkeypatch.setattr(UNet2DModel, "forward", forward)
    monkeypatch.setattr(pipeline, "_fit", fit)
    return seen
