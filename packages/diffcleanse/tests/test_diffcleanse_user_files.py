"""A user's own files: image modes and layouts, npz arrays, trigger files and UNet folders."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import testing
from paperzoo.diffcleanse.data import ImageFolderData, NpzData, read_user_image
from paperzoo.diffcleanse.triggers import make_trigger

GREY = np.full((4, 4), 128, np.uint8)


def _rgba(alpha: int) -> Image.Image:
    array = np.zeros((4, 4, 4), np.uint8)
    array[..., 0], array[..., 3] = 255, alpha
    return Image.fromarray(array, "RGBA")


@pytest.mark.parametrize("name, make, expected", testing.image_encodings())
def test_images_in_other_encodings_read_as_displayed(tmp_path, name, make, expected):
    testing.check_image_read(read_user_image, tmp_path, name, make, expected)
    folder = ImageFolderData(tmp_path, size=4)  # the folder walk finds every suffix, any case
    assert len(folder.images) == 1


@pytest.mark.parametrize(
    "name, write, words",
    [
        *testing.unreadable_images(),
        ("grey_alpha.png", lambda p: _rgba(10).convert("LA").save(p), "transparent pixels"),
    ],
)
def test_unreadable_or_ambiguous_images_refused(tmp_path, name, write, words):
    testing.check_image_refused(read_user_image, tmp_path, name, write, words)


def test_exif_orientation_applied(tmp_path):
    array = np.zeros((4, 8, 3), np.uint8)
    array[:, :4] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    Image.fromarray(array).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    pixels = read_user_image(tmp_path / "phone.jpg")
    assert pixels.shape == (3, 8, 4)
    assert pixels[0, 0].mean() > 0.9 and pixels[0, -1].mean() < 0.1  # white on top


def test_folder_walk_skips_hidden_files_and_folders(tmp_path):
    Image.fromarray(GREY).save(tmp_path / "é猫.png")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    (tmp_path / "._é猫.png").write_bytes(b"\0\5\x16\x07junk")  # macOS resource fork
    (tmp_path / "more.png").mkdir()
    assert ImageFolderData(tmp_path, size=4).images.shape == (1, 3, 4, 4)


def test_empty_npz_refused(tmp_path):
    np.savez(tmp_path / "none.npz", images=np.zeros((0, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"none.npz: images array is empty"):
        NpzData(tmp_path / "none.npz")


def test_trigger_suffix_any_case(tmp_path):
    np.save(tmp_path / "t.npy", np.ones((1, 8, 8), ">f4"))
    (tmp_path / "t.npy").rename(tmp_path / "T.NPY")
    assert make_trigger(f"file:{tmp_path / 'T.NPY'}", (1, 8, 8)).sum().item() == 64.0


def _edit_weights(folder, change):
    from safetensors.torch import load_file, save_file

    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    key = sorted(state)[0]
    state[key] = change(state[key])
    save_file(state, weights)


@pytest.mark.parametrize(
    "case, words",
    [
        ("config_list", "must be a JSON object"),
        ("config_latin1", "not valid JSON"),
        ("config_field", "buildable UNet2DModel"),
        ("nan_weights", "non-finite"),
        ("int_weights", "not floats"),
    ],
)
def test_bad_unet_folder_refused(tmp_path, micro, case, words):
    from paperzoo.diffcleanse.model import load_unet, save_unet

    folder = save_unet(micro, tmp_path / "m")
    config = folder / "unet" / "config.json"
    if case == "config_list":
        config.write_text("[1, 2]")
    elif case == "config_latin1":
        config.write_bytes(b'{"a": "\xe9"}')
    elif case == "config_field":
        config.write_text(json.dumps({**json.loads(config.read_text()), "block_out_channels": "x"}))
    elif case == "nan_weights":
        _edit_weights(folder, lambda t: torch.full_like(t, float("nan")))
    else:
        _edit_weights(folder, lambda t: t.to(torch.int32))
    with pytest.raises(ValueError, match=words) as error:
        load_unet(folder)
    assert str(folder) in str(error.value)


def test_half_precision_weights_load(tmp_path, micro):
    from paperzoo.diffcleanse.model import load_unet, save_unet

    folder = save_unet(micro, tmp_path / "m")
    _edit_weights(folder, lambda t: t.half())
    unet, _ = load_unet(folder)
    assert next(unet.parameters()).dtype == torch.float32
