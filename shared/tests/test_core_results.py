import json
import os

import pytest
import torch

from paperzoo.core.results import atomic_path, markdown_table, read_metrics, write_results


def test_write_results_is_flat_numbers_and_table(tmp_path):
    path = write_results(tmp_path, {"acc": torch.tensor(0.5), "ok": True, "n": 3, "bad": float("nan")},
                         rows=[{"arm": "kd", "acc": 0.91234}], title="t")
    assert json.loads(path.read_text()) == {"acc": 0.5, "ok": 1, "n": 3, "bad": None}
    assert (tmp_path / "results.md").read_text() == "# t\n\n| arm | acc |\n|---|---|\n| kd | 0.9123 |\n"
    assert read_metrics(tmp_path)["ok"] == 1


def test_non_numeric_metric_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="metric 'name'"):
        write_results(tmp_path, {"name": "kd"})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    write_results(tmp_path, {"acc": 0.1})
    real_replace = os.replace

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_results(tmp_path, {"acc": 0.9})
    monkeypatch.setattr(os, "replace", real_replace)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"acc": 0.1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "results.md"]


def test_atomic_path_removes_temporary_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_markdown_table_escapes_and_orders_columns():
    text = markdown_table([{"a": 1, "b": "x|y"}, {"b": 2.0, "c": 3}])
    assert text.splitlines()[0] == "| a | b | c |"
    assert "x\\|y" in text and "2.0000" in text


def test_results_get_ordinary_permissions(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    path = write_results(tmp_path, {"acc": 1.0})
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's owner-only 0600
