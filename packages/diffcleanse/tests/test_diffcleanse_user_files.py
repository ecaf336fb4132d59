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


def test_uint16_npz_is_read_over_65535_like_16_bit_image_files(tmp_path):
    """A 16-bit array (a scanner's, or 16-bit PNGs stacked) is read as the core reads a 16-bit
    image file, in either byte order; before, it was refused as out of [0, 1]."""
    levels = np.array([[0, 257, 32768, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "wide.png")
    expected = read_user_image(tmp_path / "wide.png")[0] * 2 - 1
    for order in ("<u2", ">u2"):
        np.savez(tmp_path / "wide.npz", images=levels[None].astype(order))
        images = NpzData(tmp_path / "wide.npz").images
        assert images.shape == (1, 1, 1, 4)
        assert torch.equal(images[0, 0], expected)


def test_celeba_partition_list_with_a_byte_order_mark_reads_and_latin1_is_refused(tmp_path):
    from paperzoo.diffcleanse.data import CelebAData

    (tmp_path / "img_align_celeba").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img_align_celeba" / "é1.jpg")
    listing = tmp_path / "list_eval_partition.txt"
    listing.write_bytes("\ufeffé1.jpg 0\n".encode())  # saved by a Windows editor
    assert CelebAData(tmp_path, size=4).images.shape == (1, 3, 4, 4)
    listing.write_bytes("é1.jpg 0\n".encode("latin-1"))
    with pytest.raises(
        ValueError,
        match=r"CelebA partition list .*list_eval_partition\.txt is "
        r"not UTF-8 text .*b'\\xe9'",
    ):
        CelebAData(tmp_path, size=4)


def test_a_unet_config_with_a_byte_order_mark_loads(tmp_path, micro):
    from paperzoo.diffcleanse.model import load_unet, save_unet

    folder = save_unet(micro, tmp_path / "m")
    for name in ("unet/config.json", "scheduler/scheduler_config.json"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    unet, _ = load_unet(folder)
    assert list(unet.config.block_out_channels) == list(micro.config.block_out_channels)


def test_a_broken_zoo_recipe_or_removal_record_is_named(tmp_path, micro):
    from paperzoo.diffcleanse.pipeline import _pruned_from_record
    from paperzoo.diffcleanse.validation import _cached

    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "recipe.json").write_text('{"steps": 1')
    with pytest.raises(ValueError, match=r"zoo model recipe .*recipe\.json is not valid JSON"):
        _cached(tmp_path, "base", {"steps": 1}, lambda: micro)
    record = tmp_path / "removal_inputs.json"
    record.write_bytes(b'{"note": "\xe9"}')
    with pytest.raises(ValueError, match=r"removal record .*removal_inputs\.json is not UTF-8"):
        _pruned_from_record(micro, record, "0" * 64)


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
        ("config_latin1", r"UNet config .*config\.json is not UTF-8 text"),
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
