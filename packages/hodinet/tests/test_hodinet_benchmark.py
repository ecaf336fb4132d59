"""The throughput benchmark's output guard (no timing runs here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture
def throughput():
    spec = importlib.util.spec_from_file_location("hodinet_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_existing_out_is_refused_before_any_timing(throughput, tmp_path, monkeypatch):
    def never(argv):
        raise AssertionError("a timing run started")

    monkeypatch.setattr(throughput, "_run", never)
    recorded = tmp_path / "throughput.json"
    recorded.write_text("[]\n")
    with pytest.raises(SystemExit, match="already exists.*--overwrite"):
        throughput.main(["--configs", "tiny:64", "--out", str(recorded)])
    assert recorded.read_text() == "[]\n"
    with pytest.raises(SystemExit, match="bad config 'huge:64'"):
        throughput.main(["--configs", "tiny:64", "huge:64", "--out", str(tmp_path / "new.json")])
    committed = SCRIPT.parent / "results" / "throughput.json"
    before = committed.read_bytes()
    with pytest.raises(SystemExit, match="throughput.json already exists"):
        throughput.main([])  # the default --out is the recorded file
    assert committed.read_bytes() == before


def test_overwrite_writes_every_record_atomically(throughput, tmp_path, monkeypatch):
    def fake(argv):
        if "--memory" in argv:
            return {"peak_mib": 100.0 if argv[1].startswith("add_fusion") else 110.0}
        keys = ("infer_b1_img_per_s", "infer_b8_img_per_s", "train_b4_img_per_s")
        return {"preset": argv[1].split(":")[0], **{f"{label}_{k}": 2.0 if label == "hodinet" else 4.0
                                                    for label in ("addfusion", "hodinet") for k in keys}}

    monkeypatch.setattr(throughput, "_run", fake)
    out = tmp_path / "results" / "throughput.json"
    out.parent.mkdir()
    out.write_text("old\n")
    throughput.main(["--configs", "tiny:64", "paper:224", "--out", str(out), "--overwrite"])
    records = json.loads(out.read_text())
    assert [r["preset"] for r in records] == ["tiny", "paper"]
    assert records[0]["ratio_infer_b1_img_per_s"] == 0.5 and records[0]["ratio_peak_mib"] == 1.1
    assert sorted(p.name for p in out.parent.iterdir()) == ["throughput.json"]  # no temp file left
