import pytest

from paperzoo.core.data import HIDDEN_FOLDERS, is_hidden, read_json, read_text


def test_is_hidden_by_name():
    for name in (".DS_Store", "._a.png", ".ipynb_checkpoints", "__MACOSX", ".cache"):
        assert is_hidden(f"data/train/{name}"), name
    for name in ("a.png", "MACOSX", "_a.png", "a.DS_Store", "x__MACOSX"):
        assert not is_hidden(f"data/train/{name}"), name
    assert HIDDEN_FOLDERS == ("__MACOSX",)
    # without a root only the last part counts
    assert not is_hidden("data/__MACOSX/train/a.png")


def test_is_hidden_below_a_root(tmp_path):
    assert is_hidden(tmp_path / "__MACOSX" / "speaker1" / "a.wav", root=tmp_path)
    assert is_hidden(tmp_path / "s1" / ".cache" / "a.wav", root=tmp_path)
    assert not is_hidden(tmp_path / "s1" / "v1" / "a.wav", root=tmp_path)
    # a hidden folder above the root does not hide what lies in it
    root = tmp_path / ".hidden_parent" / "data"
    assert not is_hidden(root / "s1" / "a.wav", root=root)
    with pytest.raises(ValueError):
        is_hidden(tmp_path / "a.wav", root=tmp_path / "other")


def test_read_text_drops_the_byte_order_mark(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfid,label\r\nx,1\n")
    assert read_text(path) == "id,label\r\nx,1\n"
    path.write_text("caf\u00e9\n", encoding="utf-8")
    assert read_text(path) == "caf\u00e9\n"


def test_read_text_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes("id\ncaf\u00e9\n".encode("latin-1"))  # 0xe9 at byte 6
    with pytest.raises(ValueError) as error:
        read_text(path, "the trial list")
    message = str(error.value)
    assert str(path) in message and "the trial list" in message
    assert "at byte 6: b'\\xe9'" in message and "save it as UTF-8" in message
    with pytest.raises(FileNotFoundError, match=r"the trial list not found: .*missing\.txt"):
        read_text(tmp_path / "missing.txt", "the trial list")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_text(tmp_path, "the trial list")  # a folder is not a text file


def test_read_json(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_bytes(b'\xef\xbb\xbf[["a.png", "a_gt.png"]]')
    assert read_json(path) == [["a.png", "a_gt.png"]]
    path.write_text('[["a.png",\n "a_gt.png"]')
    with pytest.raises(ValueError) as error:
        read_json(path, "the pair list")
    message = str(error.value)
    assert f"the pair list {path} is not valid JSON" in message and "Expecting ',' delimiter at line 2, column 13" in message
    path.write_bytes(b'["\xff"]')
    with pytest.raises(ValueError, match=r"pair list .* is not UTF-8 text \(invalid start byte at byte 2"):
        read_json(path, "the pair list")
