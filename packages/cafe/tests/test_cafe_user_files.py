"""A user's own files: Linnaeus-style class folders, npz arrays and model weights."""


import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.cafe.data import load_linnaeus5, load_npz, read_user_image
from paperzoo.core import testing

GREY = np.full((4, 4), 128, np.uint8)


@pytest.mark.parametrize("name, make, expected", testing.image_encodings())
def test_images_in_other_encodings_read_as_displayed(tmp_path, name, make, expected):
    testing.check_image_read(read_user_image, tmp_path, name, make, expected)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((4, 8, 3), np.uint8)
    array[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    pixels = read_user_image(tmp_path / "phone.jpg")
    assert pixels.shape == (3, 8, 4) and pixels[0, 0].mean() > 0.9 and pixels[0, -1].mean() < 0.1


@pytest.mark.parametrize("name, write, words", testing.unreadable_images())
def test_unreadable_or_ambiguous_images_refused(tmp_path, name, write, words):
    testing.check_image_refused(read_user_image, tmp_path, name, write, words)


def _linnaeus(root):
    for name in ("berry", "dog"):
        (root / "train" / name).mkdir(parents=True)
        Image.fromarray(GREY).convert("RGB").save(root / "train" / name / "0é.jpg")
    return root


def test_linnaeus_walk_skips_hidden_entries(tmp_path):
    train = _linnaeus(tmp_path) / "train"
    (train / ".cache").mkdir()  # was class 0, shifting every label by one
    (train / "__MACOSX" / "dog").mkdir(parents=True)
    (train / "__MACOSX" / "dog" / "._0é.jpg").write_bytes(b"\0\5\x16\x07junk")
    (train / "dog" / "._0é.jpg").write_bytes(b"\0\5\x16\x07junk")
    (train / "dog" / ".DS_Store").write_bytes(b"junk")
    (train / "dog" / "more.jpg").mkdir()
    images, labels = load_linnaeus5(tmp_path, size=4)
    assert images.shape == (2, 3, 4, 4) and labels.tolist() == [0, 1]


def test_linnaeus_empty_class_refused(tmp_path):
    (_linnaeus(tmp_path) / "train" / "cat").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*cat holds no images"):
        load_linnaeus5(tmp_path, size=4)


@pytest.mark.parametrize("name, x, y, words", [
    ("complex", np.ones((4, 2)) + 1j, np.arange(4) % 2, "real numbers, got complex128"),
    ("empty", np.zeros((0, 2)), np.zeros(0, np.int64), "hold no samples"),
    ("huge", np.full((4, 2), 1e300), np.arange(4) % 2, "in float32"),
])
def test_bad_arrays_refused(tmp_path, name, x, y, words):
    np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    with pytest.raises(ValueError, match=words) as error:
        load_npz(tmp_path / f"{name}.npz")
    assert f"{name}.npz" in str(error.value)


def test_unusual_array_dtypes_read(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=">f8").reshape(4, 3))
    np.savez(tmp_path / "odd.npz", x=x.astype(np.float16), y=np.array([0, 1, 0, 1], ">i4"))
    features, labels = load_npz(tmp_path / "odd.npz")
    assert features.dtype == torch.float32 and features[3, 2].item() == 11.0
    assert labels.tolist() == [0, 1, 0, 1]


def test_whole_number_float_labels_read_as_integers(tmp_path):
    np.savez(tmp_path / "pandas.npz", x=np.zeros((4, 2), np.float32), y=np.array([0.0, 1.0, 2.0, 1.0]))
    _, labels = load_npz(tmp_path / "pandas.npz")
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2, 1]


@pytest.mark.parametrize("bad, words", [(0.5, "value 0.5 at index 2"), (np.nan, "value nan at index 2")])
def test_fractional_or_nan_labels_refused(tmp_path, bad, words):
    np.savez(tmp_path / "odd.npz", x=np.zeros((4, 2), np.float32), y=np.array([0.0, 1.0, bad, 1.0]))
    with pytest.raises(ValueError, match=words) as error:
        load_npz(tmp_path / "odd.npz")
    assert "odd.npz: y" in str(error.value)


def test_single_class_training_refused():
    from paperzoo.cafe.module import train_vfl

    with pytest.raises(ValueError, match="single class"):
        train_vfl(torch.rand(8, 1, 8, 8), torch.zeros(8, dtype=torch.int64), epochs=1, batch_size=4)


def test_weights_with_nan_refused(tmp_path):
    from paperzoo.cafe.config import Scenario
    from paperzoo.cafe.pipeline import build_run
    from paperzoo.core.checkpoint import save_weights

    model = build_run(Scenario(n_samples=8, batch_size=4)).model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key][...] = float("nan")
    save_weights(state, tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=rf"nan.safetensors: {key} holds NaN"):
        build_run(Scenario(n_samples=8, batch_size=4, weights=str(tmp_path / "nan.safetensors")))
