"""One's own model and data: the README's examples run as written, ``npz:`` arrays, and the data
range taken from the data instead of a [0, 1] clamp that cuts standardised features."""

from __future__ import annotations

import json
import re
import shlex
import warnings
from pathlib import Path

import numpy as np
import pytest

from paperzoo.cafe.cli import main
from paperzoo.cafe.config import CafeConfig, Scenario
from paperzoo.cafe.pipeline import run_cafe

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text.split("## Your own model and data", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def standardised_npz(tmp_path_factory) -> Path:
    """Breast cancer (scikit-learn, offline), standardised: values from about -3 to 12."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    path = tmp_path_factory.mktemp("data") / "breast_cancer.npz"
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def test_readme_python_example_attacks_an_own_model(capsys):
    (code,) = _section_blocks("python")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own example
    coverage = namespace["attack"].coverage()
    assert coverage["closed_form_solved"] == 1.0 and coverage["share_never_drawn"] == 0.0
    from paperzoo.cafe.metrics import relative_l2

    error = relative_l2(namespace["partition"].merge(namespace["parts"]), namespace["x"])
    assert error < 0.1, error  # 0.011 measured (0.068 / 0.162 before rank-deficient rounds were left out)
    assert "closed_form_solved" in capsys.readouterr().out


def test_readme_python_example_on_unstandardised_features_recovers_poorly(capsys):
    """The README's claim: the same example with x * 100 ends near a relative L2 of 0.95 (0.01
    standardised), and the rank warning it prints says to standardise."""
    (code,) = _section_blocks("python")
    original = "x = torch.randn(24, 12, generator=generator)"
    assert original in code
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        exec(compile(code.replace(original, f"{original} * 100"), str(README), "exec"), namespace)  # noqa: S102
    from paperzoo.cafe.metrics import relative_l2

    error = relative_l2(namespace["partition"].merge(namespace["parts"]), namespace["x"])
    assert error > 0.5, error  # 0.95 measured
    assert any("standardise each feature" in w for w in namespace["attack"].warnings())
    capsys.readouterr()


def test_channels_last_images_from_the_cli_are_refused(tmp_path, capsys):
    path = tmp_path / "hwc.npz"
    np.savez(path, x=np.random.default_rng(0).random((40, 8, 8, 3)).astype(np.float32), y=np.arange(40) % 3)
    assert main(["attack", "--scenario.dataset", f"npz:{path}", "--iters", "1",
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "looks channels-last" in err and "(N, C, H, W), here (N, 3, 8, 8)" in err
    assert "parties on" not in err and not (tmp_path / "out").exists()


def test_readme_cli_example_on_npz_prints_the_data_range(standardised_npz, tmp_path, capsys):
    (command,) = _section_blocks("bash")
    argv = shlex.split(command.replace("\\\n", " "))[1:]
    argv = [a.replace("my_data.npz", str(standardised_npz)).replace("runs/cafe-own", str(tmp_path / "own"))
            for a in argv]
    argv[argv.index("--iters") + 1] = "150"  # the README's 400, shortened for the suite
    assert main(argv) == 0
    x = np.load(standardised_npz)["x"]
    err = capsys.readouterr().err
    assert f"data range used: [{float(x.min()):g}, {float(x.max()):g}]" in err
    metrics = json.loads((tmp_path / "own" / "metrics.json").read_text())
    assert metrics["data_range_low"] == round(float(x.min()), 4) and metrics["closed_form_solved"] == 1
    assert {"psnr_db", "rel_l2", "label_acc"} <= set(metrics) and "ssim" not in metrics


def test_default_does_at_least_as_well_as_the_clamp_turned_off(standardised_npz):
    """Issue: a [0, 1] clamp on standardised features cut real values silently."""
    scenario = Scenario(dataset=f"npz:{standardised_npz}", n_samples=20, batch_size=10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        default = run_cafe(scenario, iters=150)
        off = run_cafe(scenario, iters=150, config=CafeConfig(clamp_inputs=False))
        unit = run_cafe(scenario, iters=150, config=CafeConfig(data_range=(0.0, 1.0)))
    assert default.data_range == (pytest.approx(-3.112085, abs=1e-5), pytest.approx(12.072680, abs=1e-5))
    assert default.metrics["psnr_db"] >= off.metrics["psnr_db"]
    assert default.metrics["psnr_db"] > unit.metrics["psnr_db"] + 1.0
    assert unit.warnings and "cuts" in unit.warnings[0]
    assert any("cuts" in str(w.message) for w in caught) and not default.warnings


def test_npz_without_labels_is_named(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"lacks array\(s\) \['y'\]"):
        run_cafe(Scenario(dataset=f"npz:{path}", n_samples=4, batch_size=2, parties=3), iters=1)


def test_dlg_matches_npz_images_on_their_own_range(tmp_path, monkeypatch):
    """Images stored on [0, 255]: DLG's Hungarian matching gets the data's range (a [0, 1] clamp
    would make every pixel 1 and the matching arbitrary)."""
    import paperzoo.cafe.pipeline as pipeline
    from paperzoo.cafe.metrics import hungarian_match

    x = np.random.default_rng(0).integers(0, 256, size=(8, 1, 8, 8)).astype(np.float32)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 255.0  # the range is exactly [0, 255]
    path = tmp_path / "bytes.npz"
    np.savez(path, x=x, y=np.arange(8) % 10)
    ranges = []

    def spy(pred, target, data_range=(0.0, 1.0)):
        ranges.append(tuple(data_range))
        return hungarian_match(pred, target, data_range=data_range)

    monkeypatch.setattr(pipeline, "hungarian_match", spy)
    pipeline.run_dlg(Scenario(dataset=f"npz:{path}", n_samples=8, batch_size=4), restarts=1, iters=1)
    assert ranges == [(0.0, 255.0)]
