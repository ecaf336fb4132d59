"""The calibration-probe benchmark runs end to end on a tiny budget, splits the test set by the
whole-image JPEG, and refuses to overwrite a result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration_probe.py"


def _load():
    spec = importlib.util.spec_from_file_location("calibration_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_net_shapes_and_gradients():
    probe = _load()
    net = probe.ProbeNet(streams=("rgb", "srm"), clip=10.0)
    out = net(torch.rand(2, 3, 64, 64))
    assert out["mask_logits"].shape == (2, 1, 64, 64)
    assert [s.shape[-1] for s in out["side_logits"]] == [8, 4, 2]
    assert out["image_logit"].shape == (2,)
    out["mask_logits"].sum().backward()
    assert all(p.grad is not None for p in net.encoders["srm"].parameters())


def test_calibration_probe_end_to_end(tmp_path):
    probe = _load()
    out = tmp_path / "probe.json"
    args = ["--out", str(out), "--models", "probe_clip", "--num-train", "32", "--num-test", "24"]
    probe.main([*args, "--steps", "2"])
    (record,) = json.loads(out.read_text())
    assert record["model"] == "probe_clip" and record["steps"] == 2
    n_jpeg = record["test_images_final_jpeg"]
    assert record["test_final_jpeg"]["num_images"] == n_jpeg
    assert record["test_no_final_jpeg"]["num_images"] == 24 - n_jpeg
    with pytest.raises(SystemExit):  # an existing result is not overwritten
        probe.main([*args, "--steps", "2"])
    with pytest.raises(SystemExit):
        probe.main(["--out", str(tmp_path / "x.json"), "--models", "unknown"])
