"""A user's own files: image modes, class-folder walks, npz arrays and teacher route folders."""


import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import testing
from paperzoo.rco.data import ClassFolderDataModule, read_image, read_npz

GREY = np.full((4, 4), 128, np.uint8)


@pytest.mark.parametrize("name, make, expected", testing.image_encodings())
def test_images_in_other_encodings_read_as_displayed(tmp_path, name, make, expected):
    testing.check_image_read(read_image, tmp_path, name, make, expected)
    assert read_image(tmp_path / name, mode="L").shape == (1, 4, 4)


@pytest.mark.parametrize("name, write, words", testing.unreadable_images())
def test_unreadable_or_ambiguous_images_refused(tmp_path, name, write, words):
    testing.check_image_refused(read_image, tmp_path, name, write, words)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((4, 8, 3), np.uint8)
    array[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    pixels = read_image(tmp_path / "phone.jpg")
    assert pixels.shape == (3, 8, 4)
    assert pixels[0, 0].mean() > 0.9 and pixels[0, -1].mean() < 0.1


def test_class_folder_walk_skips_hidden_entries(tmp_path):
    for name in ("ant", "bee"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.fromarray(GREY).save(tmp_path / name / f"{i}é.png")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # was a third class
    Image.fromarray(GREY).save(tmp_path / ".ipynb_checkpoints" / "x.png")
    (tmp_path / "__MACOSX" / "ant").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "ant" / "._0é.png").write_bytes(b"\0\5\x16\x07junk")
    (tmp_path / "ant" / "._0é.png").write_bytes(b"\0\5\x16\x07junk")
    (tmp_path / "ant" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "bee" / "more.png").mkdir()
    module = ClassFolderDataModule(tmp_path)
    assert module.class_names == ["ant", "bee"] and len(module.x) == 10


def test_one_class_folder_refused(tmp_path):
    (tmp_path / "ant").mkdir()
    Image.fromarray(GREY).save(tmp_path / "ant" / "0.png")
    with pytest.raises(ValueError, match="one class sub-folder"):
        ClassFolderDataModule(tmp_path)


@pytest.mark.parametrize("name, x, y, words", [
    ("complex", np.ones((4, 2)) + 1j, np.arange(4) % 2, "real numbers, got complex128"),
    ("empty", np.zeros((0, 2)), np.zeros(0, np.int64), "hold no samples"),
    ("single", np.ones((4, 2)), np.zeros(4, np.int64), "single class"),
])
def test_bad_arrays_refused(tmp_path, name, x, y, words):
    np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    with pytest.raises(ValueError, match=words) as error:
        read_npz(tmp_path / f"{name}.npz")
    assert f"{name}.npz" in str(error.value)


def test_unusual_array_dtypes_read(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=">f8").reshape(4, 3))
    np.savez(tmp_path / "odd.npz", x=x.astype(np.float16), y=np.array([0, 1, 0, 1], ">i4"))
    features, labels = read_npz(tmp_path / "odd.npz")
    assert features.dtype == torch.float32 and features[3, 2].item() == 11.0
    assert labels.tolist() == [0, 1, 0, 1]


def _route(tmp_path):
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.rco.model import create_model
    from paperzoo.rco.route import RouteRecord, write_route_index

    overrides = {"in_features": 64, "num_classes": 10}
    save_weights(create_model("mlp_teacher", **overrides), tmp_path / "epoch_0001.safetensors")
    write_route_index(tmp_path, "mlp_teacher", overrides,
                      [RouteRecord(1, 1, "epoch_0001.safetensors", None)], [64])
    return tmp_path


def test_route_index_not_utf8_refused(tmp_path):
    from paperzoo.rco.route import TeacherRoute, read_route_records

    folder = _route(tmp_path)
    (folder / "route.json").write_bytes(b'{"format": "\xe9"}')
    for read in (TeacherRoute, read_route_records):
        with pytest.raises(ValueError, match=r"route index .*route\.json is not UTF-8 text .*at byte 12"):
            read(folder)


def test_route_index_with_byte_order_mark_read(tmp_path):
    from paperzoo.rco.route import TeacherRoute, read_route_records

    folder = _route(tmp_path)
    index = folder / "route.json"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes())
    assert [record.epoch for record in read_route_records(folder)] == [1]
    assert TeacherRoute(folder).epochs == [1]


def test_route_checkpoint_with_nan_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    from paperzoo.rco.route import TeacherRoute

    folder = _route(tmp_path)
    weights = folder / "epoch_0001.safetensors"
    state = load_file(weights)
    key = sorted(state)[0]
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, weights)
    with pytest.raises(ValueError, match=r"epoch_0001.safetensors holds non-finite values"):
        TeacherRoute(folder).load(0)
