"""Data modules: offline sources, and loaders for fixture trees copying the real layouts."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.rco.data import (
    CIFAR100DataModule,
    HierarchicalGaussianDataModule,
    ImageFolderDataModule,
    hierarchical_gaussian,
    random_crop_flip,
)


def test_digits_split_and_batches(digits_module):
    sizes = [len(digits_module.train_set), len(digits_module.val_set), len(digits_module.test_set)]
    assert sum(sizes) == 1797 and sizes[0] == pytest.approx(0.6 * 1797, abs=10)
    x, y = next(iter(digits_module.train_dataloader()))
    assert x.shape == (64, 1, 8, 8) and y.shape == (64,)
    again, _ = next(iter(digits_module.train_dataloader()))
    assert torch.equal(x, again)  # same seed, same batch order in every arm
    assert set(digits_module.train_idx.tolist()).isdisjoint(digits_module.test_idx.tolist())


def test_hierarchical_gaussian_is_seeded_and_hierarchical():
    x, y = hierarchical_gaussian(seed=3)
    x2, _ = hierarchical_gaussian(seed=3)
    assert x.shape == (6000, 32) and y.unique().tolist() == list(range(20))
    assert torch.equal(x, x2)
    assert not torch.equal(x, hierarchical_gaussian(seed=4)[0])
    means = torch.stack([x[y == c].mean(0) for c in range(20)])
    distances = torch.cdist(means, means)
    same_super = distances[0, 1:4].mean()
    other_super = distances[0, 4:].mean()
    assert same_super < 0.6 * other_super  # sub-classes sit near their super-class
    module = HierarchicalGaussianDataModule(seed=1)
    assert module.num_classes == 20 and module.input_shape == (32,)


def _write_cifar_tree(root, n_train=40, n_test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        content = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"fine_labels": [int(i % 100) for i in range(n)],
                   b"coarse_labels": [0] * n}
        with open(folder / split, "wb") as handle:
            pickle.dump(content, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}, handle)
    return folder


def test_cifar100_pickles(tmp_path):
    _write_cifar_tree(tmp_path)
    module = CIFAR100DataModule(tmp_path, batch_size=8, val_fraction=0.25)
    assert len(module.class_names) == 100
    assert len(module.train_x) + len(module.val_x) == 40 and len(module.test_x) == 20
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    x_test, _ = next(iter(module.test_dataloader()))
    assert x_test.shape[1:] == (3, 32, 32)


def test_cifar100_missing_and_malicious(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        CIFAR100DataModule(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="expected layout"):
        CIFAR100DataModule(tmp_path)
    folder = _write_cifar_tree(tmp_path / "bad")
    with open(folder / "train", "wb") as handle:
        pickle.dump({b"data": Image.new("RGB", (2, 2))}, handle)  # an object it must not build
    with pytest.raises(ValueError, match="refusing to unpickle"):
        CIFAR100DataModule(tmp_path / "bad")


def test_random_crop_flip_shapes_and_content():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    out = random_crop_flip(images, 0, torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], images[i]) or torch.equal(out[i], images[i].flip(-1))
    assert random_crop_flip(images, 2, torch.Generator().manual_seed(0)).shape == images.shape


def _write_folder_tree(root):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4 if split == "train" else 2):
                Image.fromarray(np.full((40, 50, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.JPEG")


def test_image_folder_layout(tmp_path):
    _write_folder_tree(tmp_path)
    module = ImageFolderDataModule(tmp_path, batch_size=2, resize=36, crop=32, val_fraction=0.25)
    assert module.class_names == ["cat", "dog"] and module.input_shape == (3, 32, 32)
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (2, 3, 32, 32)
    assert len(module.test_set) == 4 and len(module.val_set) == 2


def _write_one_picture_tree(root):
    """Every image is the same picture, so a batch shows only the crops and flips drawn."""
    picture = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    for split, count in (("train", 8), ("val", 2)):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(picture).save(folder / f"{i}.png")


def _two_epochs(root, num_workers):
    module = ImageFolderDataModule(root, batch_size=4, resize=12, crop=8, val_fraction=0.25, seed=3,
                                   num_workers=num_workers)
    loader = module.train_dataloader()
    return [torch.cat([x for x, _ in loader]) for _ in range(2)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_image_folder_augmentation_changes_each_epoch_and_repeats_with_the_seed(tmp_path, num_workers):
    """With worker processes each worker reseeds its copy of the augmentation generator from the
    loader's seeded draw, so epochs (and workers) do not repeat one another's crops and flips."""
    _write_one_picture_tree(tmp_path)
    first, second = _two_epochs(tmp_path, num_workers)
    assert first.shape == (12, 3, 8, 8)
    assert not torch.equal(first, second)  # a new epoch draws new crops and flips
    assert not torch.equal(first[:4], first[4:8])  # batches 0 and 1 (two workers when 2)
    again = _two_epochs(tmp_path, num_workers)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])  # same seed, same draws


def test_image_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/<class>"):
        ImageFolderDataModule(tmp_path / "absent")
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolderDataModule(tmp_path)


def _write_npz(path, n=100, features=6, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.arange(n) % classes
    np.savez(path, x=x, y=y)
    return x, y


def test_npz_arrays_are_the_users_data(tmp_path):
    from paperzoo.rco.data import NpzDataModule, make_datamodule

    x, y = _write_npz(tmp_path / "mine.npz")
    module = make_datamodule(f"npz:{tmp_path / 'mine.npz'}", seed=3, batch_size=16)
    assert isinstance(module, NpzDataModule)
    assert (module.num_classes, module.input_shape) == (4, (6,))
    assert (len(module.train_idx), len(module.val_idx), len(module.test_idx)) == (60, 20, 20)
    test = module.test_set.tensors
    assert torch.equal(test[0], torch.from_numpy(x)[module.test_idx])
    assert torch.equal(test[1], torch.from_numpy(y)[module.test_idx])
    assert torch.bincount(test[1]).tolist() == [5, 5, 5, 5]  # stratified


def test_npz_bad_input(tmp_path):
    from paperzoo.rco.data import NpzDataModule

    with pytest.raises(FileNotFoundError, match="arrays x"):
        NpzDataModule(tmp_path / "absent.npz")
    np.savez(tmp_path / "named.npz", inputs=np.zeros((4, 2)), labels=np.zeros(4))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['x', 'y'\]; it holds \['inputs', 'labels'\]; expected"):
        NpzDataModule(tmp_path / "named.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4))
    with pytest.raises(ValueError, match="objects.npz cannot be read as an .npz archive"):
        NpzDataModule(tmp_path / "objects.npz")
    np.savez(tmp_path / "frac.npz", x=np.zeros((4, 2)), y=np.array([0.5, 1, 0, 1]))
    with pytest.raises(ValueError, match="integer class labels"):
        NpzDataModule(tmp_path / "frac.npz")
    np.savez(tmp_path / "names.npz", x=np.zeros((4, 2)), y=np.array(["cat", "dog", "cat", "dog"]))
    with pytest.raises(ValueError, match=r"names\.npz: x and y must be numeric.*map label names to 0\.\.K-1"):
        NpzDataModule(tmp_path / "names.npz")


def test_npz_labels_must_be_0_to_k_minus_1(tmp_path):
    """Gapped labels would build a max+1-class model (CLI) or index past a K-output one."""
    from paperzoo.rco.data import NpzDataModule, make_datamodule

    x = np.zeros((8, 3), dtype=np.float32)
    np.savez(tmp_path / "gap.npz", x=x, y=np.array([3, 7, 11, 20])[np.arange(8) % 4])
    message = r"0\.\.K-1 .* 4 distinct labels \{3, 7, 11, 20\} \(expected 0\.\.3\); map them .*return_inverse"
    with pytest.raises(ValueError, match=message):
        NpzDataModule(tmp_path / "gap.npz")
    with pytest.raises(ValueError, match=message):
        make_datamodule(f"npz:{tmp_path / 'gap.npz'}")
    np.savez(tmp_path / "one_up.npz", x=x, y=np.arange(8) % 4 + 1)  # 1..4, 0 unused
    with pytest.raises(ValueError, match=r"\{1, 2, 3, 4\} \(expected 0\.\.3\)"):
        NpzDataModule(tmp_path / "one_up.npz")
    np.savez(tmp_path / "mapped.npz", x=x,
             y=np.unique(np.array([3, 7, 11, 20])[np.arange(8) % 4], return_inverse=True)[1])
    assert NpzDataModule(tmp_path / "mapped.npz").num_classes == 4  # the suggested mapping


def test_npz_that_is_a_bare_npy_or_a_pickle_is_refused_naming_the_file(tmp_path):
    from paperzoo.rco.data import NpzDataModule

    np.save(tmp_path / "array.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=re.escape(f"npz file {tmp_path / 'array.npy'} is not an .npz archive")):
        NpzDataModule(tmp_path / "array.npy")
    with open(tmp_path / "pickled.npz", "wb") as handle:
        pickle.dump({"x": np.zeros((4, 2)), "y": np.zeros(4)}, handle)
    with pytest.raises(ValueError, match=re.escape(f"npz file {tmp_path / 'pickled.npz'} is not an .npz archive")):
        NpzDataModule(tmp_path / "pickled.npz")


def test_npz_with_nan_or_inf_features_is_refused_naming_the_file(tmp_path):
    from paperzoo.rco.data import NpzDataModule, read_npz

    x = np.zeros((6, 3))
    x[2, 1], x[4, 0], x[4, 2] = np.nan, np.inf, -np.inf
    path = tmp_path / "holes.npz"
    np.savez(path, x=x, y=np.arange(6) % 2)
    message = re.escape(f"{path}: x holds 3 NaN or infinite values (in float32), in 2 samples, the first at index 2")
    with pytest.raises(ValueError, match=message):
        read_npz(path)
    with pytest.raises(ValueError, match=message):
        NpzDataModule(path)


def test_class_folder_tree(tmp_path):
    from paperzoo.rco.data import ClassFolderDataModule, make_datamodule

    for label, name in enumerate(["ant", "bee", "cow"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(np.full((6, 6), 10 * i + 60 * label, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    module = make_datamodule(f"folder:{tmp_path}", seed=0, batch_size=4)
    assert isinstance(module, ClassFolderDataModule)
    assert module.class_names == ["ant", "bee", "cow"]
    assert (module.num_classes, module.input_shape, len(module.x)) == (3, (3, 6, 6), 15)
    assert module.x[5, 0, 0, 0].item() == pytest.approx(60 / 255)  # bee/0.png
    grey = ClassFolderDataModule(tmp_path, mode="L", image_size=4)
    assert grey.input_shape == (1, 4, 4)
    Image.fromarray(np.zeros((7, 6), dtype=np.uint8)).save(tmp_path / "cow" / "odd.png")
    with pytest.raises(ValueError, match=r"odd.png is .*pass image_size \(--image_size N on the command line\)"):
        ClassFolderDataModule(tmp_path)
    resized = make_datamodule(f"folder:{tmp_path}", image_size=5)
    assert resized.input_shape == (3, 5, 5) and len(resized.x) == 16
    with pytest.raises(ValueError, match="image_size must be >= 1, got 0"):
        make_datamodule(f"folder:{tmp_path}", image_size=0)
    with pytest.raises(ValueError, match="--image_size applies only to --data folder:DIR, not 'digits'"):
        make_datamodule("digits", image_size=8)


def test_make_datamodule_names_the_choices():
    from paperzoo.rco.data import make_datamodule

    for bad in ("mnist", "npz", "digits:x"):
        with pytest.raises(ValueError, match="choose from digits, gauss, cifar100, imagefolder"):
            make_datamodule(bad)
    with pytest.raises(ValueError, match="needs --root"):
        make_datamodule("cifar100")


def test_split_fingerprint_follows_the_test_split(tmp_path):
    from paperzoo.rco.data import DigitsDataModule, split_fingerprint

    assert split_fingerprint(DigitsDataModule(seed=0)) == split_fingerprint(DigitsDataModule(seed=0, batch_size=8))
    assert split_fingerprint(DigitsDataModule(seed=0)) != split_fingerprint(DigitsDataModule(seed=1))
    _write_folder_tree(tmp_path)
    folders = ImageFolderDataModule(tmp_path, resize=36, crop=32, val_fraction=0.25)
    assert split_fingerprint(folders) == split_fingerprint(
        ImageFolderDataModule(tmp_path, resize=36, crop=32, val_fraction=0.25, seed=5))
    assert split_fingerprint(object()) is None
