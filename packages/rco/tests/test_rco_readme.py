"""The README's "Your own model and data" example, Python and command line, runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from paperzoo.core import testing
from paperzoo.rco.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    section = README.read_text().split("### Your own model and data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_own_model_and_data_in_python(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = _blocks("python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    rco, hinted, route = namespace["rco"], namespace["hinted"], namespace["route"]
    assert route.model_name is None and len(route) == 20
    assert rco.anchor_epochs == [5, 10, 15, 20] and hinted.anchor_epochs == [10, 20]
    assert rco.test_acc > 0.8 and hinted.test_acc > 0.8  # 4 classes: chance is 0.25
    assert hinted.module.loss_fn.regressor.in_features == 8
    assert capsys.readouterr().out.strip()


def test_own_data_on_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10)).astype("float32")
    np.savez("mine.npz", x=x, y=(x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0))
    for label, name in enumerate(["dark", "light"]):
        Path("my_images", name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 100, (8, 8, 3)) + 150 * label
            Image.fromarray(pixels.astype(np.uint8)).save(f"my_images/{name}/{i}.png")
    (block,) = _blocks("bash")
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("paperzoo-rco")]
    assert len(commands) == 4
    for argv in commands:
        assert main(argv[1:]) == 0, argv
    rco = testing.check_metrics_json(tmp_path / "runs/mine-rco", ["test_acc", "anchor_3_epoch"])
    assert [rco[f"anchor_{i}_epoch"] for i in range(4)] == [2, 4, 6, 8]
    images = testing.check_metrics_json(tmp_path / "runs/img-teacher", ["teacher_test_acc"])
    assert images["route_checkpoints"] == 8
    resized = testing.check_metrics_json(tmp_path / "runs/img16-teacher", ["teacher_test_acc"])
    assert resized["route_checkpoints"] == 2
    assert "image_size: 16" in (tmp_path / "runs/img16-teacher/config.yaml").read_text()
