"""``--resume`` of the training verbs: a run interrupted after some epochs and resumed gives the
route, the student and the written results (``logs/metrics.csv`` included) of the run that was
never interrupted, bit for bit."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paperzoo.core import testing
from paperzoo.core.checkpoint import load_state_dict
from paperzoo.rco.anchors import GreedySelector
from paperzoo.rco.cli import main
from paperzoo.rco.route import TeacherRoute

TEACHER = ["train-teacher", "--epochs", "4", "--threads", "1"]  # mlp_teacher: dropout draws


def _interrupt_and_resume(argv: list[str], out: Path, after: int) -> dict:
    """Run ``argv`` into ``out``, stop it after its ``after``-th epoch checkpoint (at the next
    epoch's first batch, or the fit's end), check that checkpoint and resume; returns the
    checkpoint the resumed run started from."""
    with testing.interrupt_training(after), pytest.raises(testing.TrainingInterrupted):
        main([*argv, "--out", str(out)])
    assert (out / "config.yaml").is_file() and not (out / "metrics.json").exists()
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == after - 1
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    return checkpoint


def _same_files(straight: Path, resumed: Path, names: list[str]) -> None:
    for name in names:
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), f"{name} differs"


def _same_weights(straight: Path, resumed: Path) -> None:
    expected, got = load_state_dict(straight), load_state_dict(resumed)
    assert sorted(expected) == sorted(got)
    for key, tensor in expected.items():
        assert torch.equal(tensor, got[key]), f"{resumed.name}: {key} differs"


def _same_route(straight: Path, resumed: Path) -> None:
    """The resumed route equals the uninterrupted one file for file, and opens whole."""
    files = sorted(p.name for p in straight.iterdir())
    assert sorted(p.name for p in resumed.iterdir()) == files
    for name in files:
        if name.endswith(".safetensors"):
            _same_weights(straight / name, resumed / name)
    _same_files(straight, resumed, files)
    route = TeacherRoute(resumed)
    assert route.epochs == TeacherRoute(straight).epochs


@pytest.fixture(scope="module")
def straight_teacher(tmp_path_factory) -> Path:
    """The uninterrupted train-teacher run; its route also feeds the distill and kd cases."""
    out = tmp_path_factory.mktemp("teacher") / "straight"
    assert main([*TEACHER, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("after", [2, 4])  # mid-run; after the last epoch (nothing left to train)
def test_train_teacher_resumed_records_the_uninterrupted_route(straight_teacher, tmp_path, after):
    cut = tmp_path / "cut"
    checkpoint = _interrupt_and_resume(TEACHER, cut, after)
    assert [r["epoch"] for r in checkpoint["callbacks"]["RouteRecorder"]["records"]] == list(range(1, after + 1))
    _same_route(straight_teacher / "route", cut / "route")
    _same_files(straight_teacher, cut, ["metrics.json", "results.md", "logs/metrics.csv"])


def test_train_teacher_resume_refuses_a_route_changed_after_the_stop(tmp_path, capsys):
    cut = tmp_path / "cut"
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        main([*TEACHER, "--out", str(cut)])
    index = cut / "route" / "route.json"
    payload = json.loads(index.read_text())
    payload["records"] = payload["records"][:1]
    index.write_text(json.dumps(payload))
    assert main([*TEACHER, "--out", str(cut), "--resume"]) == 2
    assert "is not the one the checkpoint recorded (epochs [1, 2])" in capsys.readouterr().err


# (verb, options, checkpoints before the stop): KD; RCO with the hint loss (its regressor),
# stopped inside its second stage; greedy search stopped at a stage boundary, so the resumed
# run chooses the next anchor, with a dropout student (torch's global generator matters).
DISTILL_CASES = {
    "kd": (["kd"], 2),
    "eeis_hint": (["distill", "--anchors", "eeis:2", "--loss", "hint"], 3),
    "greedy": (["distill", "--anchors", "greedy:mu=2,max=3", "--student", "mlp_teacher"], 1),
}


def _distill_argv(case: str, route: Path) -> tuple[list[str], int]:
    options, after = DISTILL_CASES[case]
    return [*options, "--route", str(route), "--epochs", "4", "--threads", "1"], after


@pytest.mark.parametrize("case", list(DISTILL_CASES))
def test_distill_and_kd_resumed_train_the_uninterrupted_student(straight_teacher, tmp_path, case):
    argv, after = _distill_argv(case, straight_teacher / "route")
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*argv, "--out", str(straight)]) == 0
    checkpoint = _interrupt_and_resume(argv, cut, after)
    assert len(checkpoint["callbacks"]["EpochHistory"]["rows"]) == after
    _same_weights(straight / "student.safetensors", cut / "student.safetensors")
    _same_files(straight, cut, ["student.safetensors.json", "metrics.json", "results.md", "logs/metrics.csv"])


def test_distill_resume_refuses_a_route_changed_after_the_stop(straight_teacher, tmp_path, capsys):
    import shutil

    route = tmp_path / "route"
    shutil.copytree(straight_teacher / "route", route)
    argv, _ = _distill_argv("kd", route)
    cut = tmp_path / "cut"
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        main([*argv, "--out", str(cut)])
    index = route / "route.json"
    payload = json.loads(index.read_text())
    payload["records"][0]["val_acc"] = 0.5  # as if the teacher had been trained again
    index.write_text(json.dumps(payload))
    assert main([*argv, "--out", str(cut), "--resume"]) == 2
    assert "this checkpoint was trained along another route" in capsys.readouterr().err


def test_without_the_restored_selector_the_greedy_continuation_differs(straight_teacher, tmp_path,
                                                                      monkeypatch):
    """The greedy case above can fail: a resumed selector that draws from torch's global
    generator while it fills its caches (as a fresh one does) changes the dropout student."""
    argv, after = _distill_argv("greedy", straight_teacher / "route")
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main([*argv, "--out", str(straight)]) == 0
    reset = GreedySelector.reset

    def reset_as_new(self, chosen=(), distances=()):
        reset(self, chosen, distances)
        self._restored = False

    monkeypatch.setattr(GreedySelector, "reset", reset_as_new)
    _interrupt_and_resume(argv, cut, after)
    straight_weights = load_state_dict(straight / "student.safetensors")
    resumed_weights = load_state_dict(cut / "student.safetensors")
    assert not all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def _write_cifar_tree(root: Path, n_train: int = 40, n_test: int = 20) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        content = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"fine_labels": [int(i % 100) for i in range(n)], b"coarse_labels": [0] * n}
        (folder / split).write_bytes(pickle.dumps(content))
    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))


def test_train_teacher_on_cifar100_resumes_the_shuffle_and_the_crops(tmp_path):
    """CIFAR-100's training batches come from generators the datamodule names (its loader is
    not a DataLoader): the resumed epochs draw the uninterrupted run's batches and crops."""
    _write_cifar_tree(tmp_path / "c100")
    argv = ["train-teacher", "--data", "cifar100", "--root", str(tmp_path / "c100"), "--model",
            "mlp_tiny", "--epochs", "3", "--batch_size", "8", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "straight")]) == 0
    checkpoint = _interrupt_and_resume(argv, tmp_path / "cut", 1)
    assert set(checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]) == {
        "datamodule.train_augment_generator", "datamodule.train_shuffle_generator"}
    _same_route(tmp_path / "straight" / "route", tmp_path / "cut" / "route")
    _same_files(tmp_path / "straight", tmp_path / "cut", ["metrics.json", "results.md", "logs/metrics.csv"])


def test_library_train_teacher_resumes_from_python(tmp_path, digits_module):
    """``train_teacher(..., resume_dir=, resume=True)``: the same call continues the route."""
    from paperzoo.rco.pipeline import train_teacher

    def run(out: Path, resume: bool = False) -> None:
        train_teacher(digits_module, out / "route", "mlp_teacher", epochs=3, seed=0,
                      resume_dir=out / "checkpoints", resume=resume)

    run(tmp_path / "straight")
    with testing.interrupt_training(2), pytest.raises(testing.TrainingInterrupted):
        run(tmp_path / "cut")
    run(tmp_path / "cut", resume=True)
    _same_route(tmp_path / "straight" / "route", tmp_path / "cut" / "route")


def test_library_train_teacher_resumes_an_image_folder_run(tmp_path):
    """Image folders: the crops' and flips' generator is the dataset's (named by the datamodule,
    so it is saved); the shuffle is a plain ``DataLoader(shuffle=True, generator=g)``, whose
    generator the core saves and restores itself."""
    from paperzoo.rco.data import ImageFolderDataModule
    from paperzoo.rco.pipeline import train_teacher

    picture = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    for split, count in (("train", 8), ("val", 2)):
        for name in ("a", "b"):
            (tmp_path / "images" / split / name).mkdir(parents=True)
            for i in range(count):
                shifted = np.roll(picture, i, axis=1)
                Image.fromarray(shifted).save(tmp_path / "images" / split / name / f"{i}.png")

    def run(out: Path, resume: bool = False) -> None:
        data = ImageFolderDataModule(tmp_path / "images", batch_size=4, resize=12, crop=8,
                                     val_fraction=0.25, seed=3)
        train_teacher(data, out / "route", "mlp_tiny", {"in_features": 192, "num_classes": 2},
                      epochs=3, seed=0, log_dir=out, resume_dir=out / "checkpoints", resume=resume)

    run(tmp_path / "straight")
    with testing.interrupt_training(1), pytest.raises(testing.TrainingInterrupted):
        run(tmp_path / "cut")
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    generators = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states"]["generators"]
    assert "datamodule.train_augment_generator" in generators
    assert any(path.startswith("train_dataloader") for path in generators), list(generators)
    run(tmp_path / "cut", resume=True)
    _same_route(tmp_path / "straight" / "route", tmp_path / "cut" / "route")
    _same_files(tmp_path / "straight", tmp_path / "cut", ["logs/metrics.csv"])


def test_library_runs_without_a_resume_folder_save_no_checkpoint(tmp_path, digits_module):
    from paperzoo.rco.pipeline import train_teacher

    with pytest.raises(ValueError, match="resume=True needs resume_dir"):
        train_teacher(digits_module, tmp_path / "route", "mlp_tiny", epochs=1, resume=True)
    train_teacher(digits_module, tmp_path / "route", "mlp_tiny", epochs=1, log_dir=tmp_path, seed=0)
    assert not list(tmp_path.rglob("*.ckpt")) and not (tmp_path / "checkpoints").exists()
