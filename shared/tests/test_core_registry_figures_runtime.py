from dataclasses import dataclass

import pytest
import torch

from paperzoo.core.figures import new_figure, save_figure
from paperzoo.core.registry import Registry, fill_preset
from paperzoo.core.runtime import torch_threads


class Net(torch.nn.Module):
    def __init__(self, width: int = 4, depth: int = 1, classes: int = 10) -> None:
        super().__init__()
        self.width, self.depth, self.classes = width, depth, classes


def _registry():
    models = Registry("model")
    models.add("tiny", Net, width=8, depth=1)
    models.add("paper", Net, width=64, depth=4)
    return models


def test_registry_builds_presets_and_overrides_win():
    models = _registry()
    assert models.names() == ["paper", "tiny"] and "tiny" in models and len(models) == 2
    tiny = models.create("tiny")
    assert (tiny.width, tiny.depth, tiny.classes) == (8, 1, 10)
    wider = models.create("tiny", width=32, classes=3)
    assert (wider.width, wider.depth, wider.classes) == (32, 1, 3)
    assert models.preset("paper") == {"width": 64, "depth": 4}


def test_registry_errors_name_the_valid_choices():
    models = _registry()
    with pytest.raises(ValueError, match="unknown model 'huge'; choose from paper, tiny"):
        models.create("huge")
    with pytest.raises(ValueError, match=r"takes no \['colour'\]; valid: classes, depth, width"):
        models.create("tiny", colour=1)
    with pytest.raises(ValueError, match="already registered"):
        models.add("tiny", Net)
    with pytest.raises(TypeError, match="takes no"):
        models.add("odd", Net, height=3)


def test_registry_decorator():
    models = Registry("loss")

    @models.register("scaled", factor=2.0)
    def scaled(factor: float = 1.0):
        return factor

    assert models.create("scaled") == 2.0 and models.create("scaled", factor=3.0) == 3.0


PRESETS = {"tiny": {"width": 8, "rounds": 10}, "paper": {"width": 256, "rounds": 1000}}


@dataclass
class Config:
    preset: str = "paper"
    width: int | None = None
    rounds: int | None = None
    lr: float = 0.1

    def __post_init__(self):
        fill_preset(self, PRESETS)


def test_fill_preset_explicit_values_win():
    assert (Config(preset="tiny").width, Config(preset="tiny").rounds) == (8, 10)
    assert (Config().width, Config().rounds) == (256, 1000)
    mixed = Config(preset="tiny", width=32)
    assert (mixed.width, mixed.rounds, mixed.lr) == (32, 10, 0.1)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        Config(preset="huge")


def test_save_figure_is_atomic_png_without_pyplot(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from paperzoo.core.figures import new_figure, save_figure; "
            f"f, a = new_figure(); a.plot([0, 1]); save_figure(f, {str(tmp_path / 'p.png')!r}); "
            "print('matplotlib.pyplot' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    figure, axes = new_figure(1, 2, figsize=(4, 2))
    axes[0].plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "sub" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["plot.png"]
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(figure, tmp_path / "plot.jpg")


def test_torch_threads_restores_the_callers_setting():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target) as inside:
        assert inside == target == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(target):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(0) as inside:
        assert inside == before
    with pytest.raises(ValueError, match="threads"), torch_threads(-1):
        pass
