"""Data loaders on fixture trees that copy the real layouts, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.diffcleanse.data import (
    CelebAData,
    Cifar10Data,
    ImageFolderData,
    NpzData,
    SyntheticData,
    digits_images,
    load_images,
)

from .conftest import write_celeba, write_cifar, write_folder


def test_digits_sizes_and_range():
    for size in (8, 16):
        images = digits_images(size)
        assert images.shape == (1797, 1, size, size) and images.min() >= -1 and images.max() <= 1


def test_cifar_layout(tmp_path):
    root = write_cifar(tmp_path / "c")
    data = Cifar10Data(root)
    assert data.images.shape == (20, 3, 32, 32) and data.images.min() >= -1
    small = Cifar10Data(root, train=False, size=16, channels=1, resize=True)
    assert small.images.shape == (4, 1, 16, 16)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        Cifar10Data(root)


def test_folder_celeba_npz(tmp_path):
    folder = write_folder(tmp_path / "imgs")
    assert ImageFolderData(folder, size=16, channels=1, resize=True).images.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="--resize"):
        ImageFolderData(folder, size=16, resize=False)
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolderData(write_folder(tmp_path / "none", n=0))
    root = write_celeba(tmp_path / "celeba")
    assert CelebAData(root, size=16).images.shape == (2, 3, 16, 16)
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_eval_partition"):
        CelebAData(root)
    np.savez(
        tmp_path / "a.npz", images=np.random.default_rng(0).random((5, 8, 8)).astype(np.float32)
    )
    assert NpzData(tmp_path / "a.npz", size=8, channels=1).images.shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="--resize"):
        load_images(f"npz:{tmp_path / 'a.npz'}", 16, 1, resize=False)
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match=r"b\.npz lacks array\(s\) \['images'\]"):
        NpzData(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="unknown data source"):
        load_images("imagenet:/x", 8)


def test_synthetic_data_from_a_model(micro):
    data = SyntheticData(micro, n=4, steps=2)
    assert data.images.shape == (4, 1, 8, 8) and data.images.abs().max() <= 1
    assert torch.equal(data.images, SyntheticData(micro, n=4, steps=2).images)


class _OpensAFile:
    """A pickle payload that creates ``marker`` when unpickled (what a tampered batch could do)."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_cifar_batches_are_read_by_the_restricted_core_reader(tmp_path):
    """Spec 6: a tampered, corrupt or wrongly shaped batch is refused naming the file; the payload
    of a tampered one never runs (raw ``pickle.load`` would create the marker)."""
    import pickle

    root = write_cifar(tmp_path / "c")
    batch = root / "cifar-10-batches-py" / "data_batch_2"
    marker = tmp_path / "payload_ran"
    batch.write_bytes(pickle.dumps({b"data": _OpensAFile(marker), b"labels": [0]}))
    with pytest.raises(ValueError, match="data_batch_2"):
        Cifar10Data(root)
    assert not marker.exists()
    batch.write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="data_batch_2"):
        Cifar10Data(root)
    with batch.open("wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4}, handle)
    with pytest.raises(ValueError, match=r"data_batch_2.*\(4, 100\)"):
        Cifar10Data(root)


def test_load_images_refuses_other_sizes_unless_resize(tmp_path):
    """Spec 6: images of another size are refused without --resize (the default)."""
    folder = write_folder(tmp_path / "imgs")  # 20x20
    root = write_cifar(tmp_path / "c")  # 32x32
    for source in (f"folder:{folder}", f"cifar10:{root}"):
        with pytest.raises(ValueError, match="--resize"):
            load_images(source, 16, 1)
        assert load_images(source, 16, 1, resize=True).shape[-2:] == (16, 16)
    assert load_images(f"cifar10:{root}", 32, 3).shape == (20, 3, 32, 32)
    assert load_images("digits", 16, 1).shape == (1797, 1, 16, 16)  # rendered at the model's size


def test_npz_source_refuses_other_formats_naming_the_file(tmp_path):
    """npz:FILE is read by the core's read_npz: a bare .npy, a pickle, object arrays, a missing
    file are refused with an error naming the file (never unpickled)."""
    import pickle
    import re

    images = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "a.npy", images)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "a.npy"))):
        NpzData(tmp_path / "a.npy")
    with pytest.raises(ValueError, match="not an .npz archive"):
        load_images(f"npz:{tmp_path / 'a.npy'}", 8)
    (tmp_path / "p.npz").write_bytes(pickle.dumps({"images": images}))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "p.npz"))):
        NpzData(tmp_path / "p.npz")
    np.savez(tmp_path / "o.npz", images=np.array([images, "x"], dtype=object))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "o.npz"))):
        NpzData(tmp_path / "o.npz")
    np.savez(tmp_path / "s.npz", images=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match=r"s\.npz: images must be numbers"):
        NpzData(tmp_path / "s.npz")
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        NpzData(tmp_path / "nowhere.npz")
    hwc = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", images=hwc)  # channels-last: read as 16 channels
    with pytest.raises(ValueError, match=r"16 channels, the model needs 3; .*looks channels-last"):
        load_images(f"npz:{tmp_path / 'hwc.npz'}", 16, 3)


def test_npz_floats_outside_0_1_are_refused_naming_the_file_and_the_range(tmp_path):
    """npz:FILE holds uint8 or [0, 1]: images saved in [-1, 1] (model space) or as float/int
    [0, 255] are refused with the file, the range found and the range expected, never clamped."""
    import re

    rng = np.random.default_rng(0)
    unit = rng.random((4, 3, 8, 8)).astype(np.float32)
    unit[0, 0, 0, 0], unit[0, 0, 0, 1] = 0.0, 1.0
    cases = {
        "pm1.npz": (
            unit * 2 - 1,
            r"values in \[-1, 1\], expected \[0, 1\] \(or uint8 in \[0, 255\], uint16 in "
            r"\[0, 65535\]\).*\(x \+ 1\) / 2",
        ),
        "f255.npz": (unit * 255, r"values in \[0, 255\], expected \[0, 1\].*divide by 255"),
        "i255.npz": ((unit * 255).astype(np.int64), r"int64 images: values in \[0, 255\]"),
        "wide.npz": (unit * 4 - 2, r"values in \[-2, 2\], expected \[0, 1\]"),
        "i16.npz": (
            (unit * 65535).astype(np.int32),
            r"int32 images: values in \[0, 6.55\de\+04\].*divide by 65535 \(or store uint16\)",
        ),
    }
    for name, (array, message) in cases.items():
        np.savez(tmp_path / name, images=array)
        pattern = re.escape(str(tmp_path / name)) + ".*" + message
        with pytest.raises(ValueError, match=pattern):
            NpzData(tmp_path / name)
        with pytest.raises(ValueError, match=pattern):
            load_images(f"npz:{tmp_path / name}", 8, 3)
    nan = unit.copy()
    nan[1, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", images=nan)
    with pytest.raises(ValueError, match=r"nan\.npz: float32 images: non-finite values"):
        NpzData(tmp_path / "nan.npz")
    # accepted: floats in [0, 1] (float rounding above 1 included), uint8 scaled by 1/255
    np.savez(tmp_path / "unit.npz", images=unit)
    assert torch.allclose(NpzData(tmp_path / "unit.npz").images, torch.from_numpy(unit) * 2 - 1)
    rounded = unit.copy()
    rounded[0, 0, 0, 1] = 1.00001
    np.savez(tmp_path / "rounded.npz", images=rounded)
    assert NpzData(tmp_path / "rounded.npz").images.max() == 1.0
    u8 = (unit * 255).round().astype(np.uint8)
    np.savez(tmp_path / "u8.npz", images=u8)
    images = NpzData(tmp_path / "u8.npz").images
    assert images.min() == -1.0 and images.max() == 1.0
    assert torch.allclose(images, torch.from_numpy(u8).float() / 255 * 2 - 1)


def test_digits_for_a_multi_channel_model_names_the_option_to_pass():
    with pytest.raises(
        ValueError,
        match=r"--ft_data digits: digits are 1-channel, the model needs 3; pass --ft_data npz:FILE, folder:DIR",
    ):
        load_images("digits", 8, 3, option="--ft_data")
    with pytest.raises(ValueError, match=r"digits are 1-channel, the model needs 3; use npz:FILE"):
        load_images("digits", 8, 3)


def test_python_entry_points_refuse_images_outside_model_space(micro):
    """The library's image tensors are in [-1, 1] (calibrate: [0, 1]); a [0, 255] or [0, 1]-vs-
    [-1, 1] mix-up is a ValueError naming the argument and the range, before any work."""
    import copy

    from paperzoo.diffcleanse.attack import PoisonedData
    from paperzoo.diffcleanse.data import check_range
    from paperzoo.diffcleanse.inversion import calibrate, to_unit
    from paperzoo.diffcleanse.pipeline import (
        backdoor_model,
        evaluate_model,
        finetune_dual,
        remove_backdoor,
        train_diffusion,
    )
    from paperzoo.diffcleanse.prune import DiffCleansePruner, taylor_importance
    from paperzoo.diffcleanse.triggers import make_target, make_trigger

    good = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixels = (good + 1) * 127.5  # [0, 255]
    g, y = make_trigger("box", (1, 8, 8)), make_target("cat", (1, 8, 8))
    eight_bit = r"values in \[[\d.]+, [\d.]+\], expected \[-1, 1\] \(model space\).*x / 127.5 - 1"
    with pytest.raises(ValueError, match="clean batch: " + eight_bit):
        remove_backdoor(micro, pixels, good, DiffCleansePruner(0.1, t_start=995, batch=4), g)
    with pytest.raises(ValueError, match="fine-tune images: " + eight_bit):
        remove_backdoor(micro, good, pixels, DiffCleansePruner(0.1, t_start=995, batch=4), g)
    with pytest.raises(ValueError, match="images: " + eight_bit):
        train_diffusion(micro, pixels, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="images: " + eight_bit):
        backdoor_model(micro, pixels, g, y, 0.5, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="fine-tune images: " + eight_bit):
        finetune_dual(copy.deepcopy(micro), micro, pixels, steps=1, batch_size=2)
    with pytest.raises(ValueError, match="clean batch x0: " + eight_bit):
        taylor_importance(micro, pixels, g, t_start=995)
    with pytest.raises(ValueError, match="images: " + eight_bit):
        PoisonedData(pixels, g, y, 0.5)
    with pytest.raises(ValueError, match="target: " + eight_bit):
        PoisonedData(good, g, (y + 1) * 127.5, 0.5)
    with pytest.raises(ValueError, match="target: " + eight_bit):
        evaluate_model(micro, g, (y + 1) * 127.5, n_trigger=2, steps=1)
    with pytest.raises(ValueError, match="non-finite"):
        train_diffusion(micro, torch.full((2, 1, 8, 8), float("nan")), steps=1, batch_size=2)
    # calibrate takes [0, 1]: model-space images are refused with the mapping to use
    with pytest.raises(
        ValueError,
        match=r"calibration images: values in \[-0.9\d+, 0.9\d+\], expected \[0, 1\].*\(x \+ 1\) / 2",
    ):
        calibrate(good)
    assert set(calibrate(to_unit(good))) == {"sim_thresh", "saturation_frac", "value_band"}
    # float rounding just outside the range passes (clamped); the tensor is returned as is inside
    assert check_range(torch.tensor([-1.00001, 1.00001]), -1, 1).abs().max() == 1.0
    assert check_range(good, -1, 1) is good
