import pytest
import torch

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict, load_weights, read_meta, save_weights


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))


def test_round_trip_is_bit_exact_and_keeps_buffers_and_meta(tmp_path):
    model = _model()
    model[1].running_mean.fill_(0.25)
    testing.check_checkpoint_roundtrip(model, tmp_path)
    path = save_weights(model, tmp_path / "w.safetensors", meta={"epoch": 3})
    assert read_meta(path) == {"epoch": 3}
    assert torch.equal(load_state_dict(path)["1.running_mean"], torch.full((3,), 0.25))


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_weights(_model(), path)


def test_mismatched_key_and_shape_are_named(tmp_path):
    path = save_weights(_model(), tmp_path / "w.safetensors")
    wider = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match=r"w\.safetensors: key '0\.weight' has shape \(3, 4\)"):
        load_weights(wider, path)
    other = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"unexpected key '1\."):
        load_weights(other, path)
    bigger = torch.nn.Sequential(*_model(), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="missing key '3.weight'"):
        load_weights(bigger, path)


def test_pickles_load_only_with_weights_only(tmp_path):
    model = _model()
    ok = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, ok)
    load_weights(_model(), ok)

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(ValueError, match="evil.pt"):
        load_state_dict(evil)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_state_dict(tmp_path / "missing.safetensors")
