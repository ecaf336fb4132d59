import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import umbrella
from paperzoo.core.data import paired_files, read_image, read_mask


def _tree(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.full((4, 5, 3), 255, np.uint8)).save(tmp_path / "img" / f"{stem}.jpg")
        mask = np.zeros((4, 5), np.uint8)
        mask[:2] = 200
        Image.fromarray(mask).save(tmp_path / "gt" / f"{stem}.png")
    return tmp_path


def test_images_masks_and_pairs(tmp_path):
    root = _tree(tmp_path)
    pairs = paired_files(root / "img", root / "gt")
    assert [(a.name, b.name) for a, b in pairs] == [("a.jpg", "a.png"), ("b.jpg", "b.png")]
    (root / "img" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble metadata
    (root / "gt" / ".DS_Store").write_bytes(b"Bud1")
    assert paired_files(root / "img", root / "gt") == pairs
    (root / "gt" / "b.png").rename(root / "gt" / "b.PNG")
    assert [b.name for _, b in paired_files(root / "img", root / "gt")] == ["a.png", "b.PNG"]
    image = read_image(pairs[0][0])
    assert image.shape == (3, 4, 5) and float(image.min()) > 0.98
    mask = read_mask(pairs[0][1])
    assert mask.shape == (1, 4, 5) and torch.equal(mask[0, :, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))


def test_mask_encodings_0_255_0_1_and_grey(tmp_path):
    """0/255 and 0/1 PNG masks of the same region read the same; grey is thresholded at half."""
    region = np.zeros((6, 7), np.uint8)
    region[1:4, 2:5] = 1
    expected = torch.from_numpy(region.astype(np.float32))[None]
    grey = np.where(region == 1, 200, 60).astype(np.uint8)
    for name, array in (("m255", region * 255), ("m01", region), ("grey", grey)):
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        mask = read_mask(tmp_path / f"{name}.png")
        assert mask.shape == (1, 6, 7) and mask.dtype == torch.float32
        assert torch.equal(mask, expected), name
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "empty.png")
    assert read_mask(tmp_path / "empty.png").sum() == 0
    Image.fromarray(region * 100).save(tmp_path / "dark.png")  # 100/255 < 0.5: empty at half
    assert read_mask(tmp_path / "dark.png").sum() == 0
    assert torch.equal(read_mask(tmp_path / "dark.png", threshold=0.3), expected)
    assert torch.equal(read_mask(tmp_path / "m01.png", threshold=0.9), expected)  # 1 = foreground
    Image.fromarray(np.ones((6, 7), np.uint8)).save(tmp_path / "all1.png")  # all foreground
    assert read_mask(tmp_path / "all1.png").sum() == 42


def test_bit_depths_and_modes_are_scaled_not_clipped(tmp_path):
    """16-bit images over 65535 (PIL's convert clips them at 255: 4000 would read as white),
    palette, grey+alpha and RGBA as PIL converts them, float in [0, 1] as is; a float image
    outside [0, 1] is refused with the file named."""
    from paperzoo.core.data import exif_orientation, unit_array, unit_bytes

    wide = (np.arange(12).reshape(3, 4) * 4000).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode in ("I;16", "I")  # Pillow 10.0 opens it as "I"
    expected = torch.from_numpy(wide.astype(np.float32) / 65535)
    image = read_image(tmp_path / "i16.png")
    assert image.shape == (3, 3, 4) and torch.allclose(image, expected.expand(3, 3, 4), atol=1e-7)
    assert torch.allclose(read_image(tmp_path / "i16.png", mode="L")[0], expected, atol=1e-7)
    # a 16-bit mask: grey over 65535 against the threshold; 0/1 still means 1 = foreground
    assert torch.equal(read_mask(tmp_path / "i16.png")[0], (expected > 0.5).float())
    Image.fromarray((wide > 20000).astype(np.uint16)).save(tmp_path / "m01_16.png")
    assert torch.equal(read_mask(tmp_path / "m01_16.png")[0], torch.from_numpy((wide > 20000).astype(np.float32)))
    region16 = (wide > 20000).astype(np.uint16) * 255  # 8-bit levels in a 16-bit file
    Image.fromarray(region16).save(tmp_path / "m255_16.png")
    assert torch.equal(read_mask(tmp_path / "m255_16.png")[0], torch.from_numpy((region16 > 0).astype(np.float32)))
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255  # opaque: the alpha band is dropped
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert torch.allclose(read_image(tmp_path / "rgba.png")[:, 0, 0], torch.tensor([200 / 255, 0, 0]))
    rgba[0, 0, 3] = 0  # one transparent pixel: its colour is hidden
    Image.fromarray(rgba).save(tmp_path / "holes.png")
    with pytest.raises(ValueError, match=r"holes.png has transparent pixels \(alpha down to 0\)"):
        read_image(tmp_path / "holes.png")
    alpha_mask = np.zeros((2, 2, 2), np.uint8)
    alpha_mask[0, :, 1] = 255  # a mask kept in the alpha band of a black image
    Image.fromarray(alpha_mask, "LA").save(tmp_path / "la.png")
    with pytest.raises(ValueError, match="la.png has transparent pixels"):
        read_mask(tmp_path / "la.png")
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[0, 0] = (128, 0, 0)  # a VOC-style class colour
    Image.fromarray(colour).save(tmp_path / "voc.png")
    Image.fromarray(colour).convert("P").save(tmp_path / "voc_p.png")
    for name in ("voc.png", "voc_p.png"):
        with pytest.raises(ValueError, match=f"mask .*{name} is in colour"):
            read_mask(tmp_path / name)
    Image.fromarray(np.stack([region16.astype(np.uint8)] * 3, -1)).save(tmp_path / "grey_rgb.png")
    assert torch.equal(read_mask(tmp_path / "grey_rgb.png")[0], torch.from_numpy((region16 > 0).astype(np.float32)))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (3, 2, 3)  # as stored, like its masks
    assert read_image(tmp_path / "phone.jpg", upright=True).shape == (3, 3, 2)  # again: not turned twice
    assert unit_bytes(tmp_path / "phone.jpg", upright=True).shape == (3, 2, 3)
    assert unit_bytes(tmp_path / "rgba.png").dtype == np.uint8 and tuple(unit_bytes(tmp_path / "rgba.png")[0, 0]) == (200, 0, 0)
    assert exif_orientation(tmp_path / "phone.jpg") == 6 and exif_orientation(tmp_path / "voc.png") == 1
    jpeg_grey = np.stack([region16.astype(np.uint8)] * 3, -1)
    jpeg_grey[0, 0] = (250, 255, 240)  # chroma noise of a JPEG-saved grey mask
    Image.fromarray(jpeg_grey).save(tmp_path / "noisy.png")
    assert read_mask(tmp_path / "noisy.png")[0, 0, 0] == 1
    assert read_image(tmp_path / "phone.jpg", upright=True).shape == (3, 3, 2)  # as shown
    Image.fromarray(np.full((2, 2), 51, np.uint8)).convert("P").save(tmp_path / "p.png")
    assert np.allclose(unit_array(tmp_path / "p.png", "L"), 0.2)
    Image.fromarray(np.full((2, 3), 0.25, np.float32)).save(tmp_path / "f.tif")
    assert unit_array(tmp_path / "f.tif", "RGB").shape == (2, 3, 3)
    assert np.allclose(unit_array(tmp_path / "f.tif", "L"), 0.25)
    Image.fromarray(np.full((2, 2), 3.5, np.float32)).save(tmp_path / "depth.tif")
    with pytest.raises(ValueError, match=r"depth.tif: 32-bit float samples must lie in \[0, 1\]"):
        read_image(tmp_path / "depth.tif")


def test_unmatched_and_unreadable_files_are_named(tmp_path):
    root = _tree(tmp_path)
    (root / "img" / "c.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"1 in .*img without a partner \(e.g. c\)"):
        paired_files(root / "img", root / "gt")
    assert len(paired_files(root / "img", root / "gt", strict=False)) == 2
    with pytest.raises(ValueError, match="c.jpg"):
        read_image(root / "img" / "c.jpg")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        paired_files(root / "nowhere", root / "gt")



def test_open_image_and_image_header_name_the_role_and_turn_only_when_asked(tmp_path):
    from paperzoo.core.data import WIDE_MODES, image_header, open_image

    with pytest.raises(FileNotFoundError, match=r"depth map file not found: .*absent\.png"):
        open_image(tmp_path / "absent.png", "depth map")
    (tmp_path / "text.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read depth map .*text\.png: "):
        open_image(tmp_path / "text.png", "depth map")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    assert open_image(tmp_path / "phone.jpg").size == (3, 2)
    assert open_image(tmp_path / "phone.jpg", upright=True).size == (2, 3)
    assert image_header(tmp_path / "phone.jpg") == ((3, 2), 6)
    with pytest.raises(FileNotFoundError, match=r"GT file not found: .*absent\.png"):
        image_header(tmp_path / "absent.png", "GT")
    with pytest.raises(ValueError, match=r"cannot read GT .*text\.png"):
        image_header(tmp_path / "text.png", "GT")
    Image.fromarray(np.full((2, 2), 4000, np.uint16)).save(tmp_path / "deep.png")
    assert open_image(tmp_path / "deep.png").mode in WIDE_MODES

def test_umbrella_without_methods_says_so(monkeypatch, capsys):
    monkeypatch.setattr(umbrella, "installed_methods", lambda: [])
    assert umbrella.main(["list"]) == 0
    assert umbrella.main(["demo"]) == 0
    assert "no paperzoo method is installed" in capsys.readouterr().out


def test_umbrella_demo_runs_each_method_and_prints_a_table(monkeypatch, capsys, tmp_path):
    from paperzoo.core.results import write_results

    class FakeEntryPoint:
        def load(self):
            def main(argv):
                out = argv[argv.index("--out") + 1]
                write_results(out, {"acc": 0.75})
                return 0
            return main

    fake = umbrella.InstalledMethod("fake", "paperzoo-fake", "0.0.1", "a fake method", FakeEntryPoint())
    monkeypatch.setattr(umbrella, "installed_methods", lambda: [fake])
    assert umbrella.main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| fake | 0.0.1 | ok |" in out and "acc=0.75" in out
    assert umbrella.main(["demo", "nope", "--out", str(tmp_path / "x")]) == 2


def test_umbrella_demo_does_not_show_older_metrics_beside_a_failure(monkeypatch, capsys, tmp_path):
    import os

    from paperzoo.core.results import write_results

    class RefusingEntryPoint:
        def load(self):
            return lambda argv: 2  # e.g. --out already holds results

    old = write_results(tmp_path / "fake", {"acc": 0.75})
    os.utime(old, (1_000_000_000, 1_000_000_000))  # written long before this run
    fake = umbrella.InstalledMethod("fake", "paperzoo-fake", "0.0.1", "a fake", RefusingEntryPoint())
    monkeypatch.setattr(umbrella, "installed_methods", lambda: [fake])
    assert umbrella.main(["demo", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "| fake | 0.0.1 | failed (2) |" in out and "acc=" not in out


def test_importing_the_core_loads_neither_lightning_nor_torch():
    code = "import sys, paperzoo.core; print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'torch')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    code = "import sys; from paperzoo.core.data import VerticalPartition; print('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_paperzoo_list_imports_no_method_and_no_lightning():
    code = ("import sys; from paperzoo.core import umbrella; umbrella.main(['list']); "
            "print('LOADED', sorted(m for m in sys.modules if m.startswith(('lightning', 'paperzoo.'))"
            " and m not in ('paperzoo.core', 'paperzoo.core.umbrella')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED []"
