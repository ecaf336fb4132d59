"""The CLI end to end (in-process ``main``), the reduced validation run and bad input exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from paperzoo.core import testing
from paperzoo.rco.cli import main

VERBS = ["train-teacher", "distill", "kd", "demo", "validate", "benchmark"]
REQUIRED = ["teacher_acc_{t}", "ce_acc_{t}", "kd_acc_{t}", "rco_eeis_acc_{t}", "rco_greedy_acc_{t}",
            "rco_reverse_acc_{t}", "rco_minus_kd_{t}", "rco_minus_kd_p_{t}", "kl_final_kd_{t}",
            "kl_final_rco_eeis_{t}"]


def test_help_lists_every_verb():
    testing.check_cli_help(main, VERBS)


def test_console_script_runs():
    script = Path(sys.executable).with_name("paperzoo-rco")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "distill" in done.stdout


@pytest.mark.parametrize("verb, args", [("distill", ["--route", "r", "--anchors", "epochs:2,4"]),
                                        ("validate", ["--seeds", "3"]), ("train-teacher", [])])
def test_print_config_round_trips(verb, args, tmp_path):
    config = testing.check_print_config(main, verb, args, tmp_path)
    assert config["seed"] == 0


def test_train_teacher_then_distill_and_kd(tmp_path):
    teacher_out = tmp_path / "teacher"
    assert main(["train-teacher", "--out", str(teacher_out), "--epochs", "4"]) == 0
    teacher = testing.check_metrics_json(teacher_out, ["teacher_test_acc", "route_checkpoints"])
    assert teacher["route_checkpoints"] == 4
    route = str(teacher_out / "route")

    rco_out = tmp_path / "rco"
    assert main(["distill", "--route", route, "--anchors", "epochs:2,4", "--epochs", "4",
                 "--out", str(rco_out)]) == 0
    rco = testing.check_metrics_json(rco_out, ["test_acc", "test_kl_to_final", "anchor_1_epoch"])
    assert (rco["anchor_0_epoch"], rco["anchor_1_epoch"]) == (2, 4)
    assert (rco_out / "student.safetensors").is_file() and (rco_out / "config.yaml").is_file()

    greedy_out = tmp_path / "greedy"
    assert main(["distill", "--route", route, "--anchors", "greedy:mu=2,max=3", "--epochs", "3",
                 "--out", str(greedy_out)]) == 0
    greedy = testing.check_metrics_json(greedy_out, ["num_anchors"])
    assert 1 <= greedy["num_anchors"] <= 3

    # Skipping near-chance checkpoints from the command line. No distance qualifies (delta
    # 1e-12), so greedy steps to the next checkpoint each stage, passing over the skipped ones.
    accs = [r["val_acc"] for r in json.loads((teacher_out / "route" / "route.json").read_text())["records"]]
    threshold = (min(accs[:-1]) + max(accs[:-1])) / 2
    assert min(accs[:-1]) < threshold < max(accs[:-1])
    skip_out = tmp_path / "skip"
    assert main(["distill", "--route", route, "--anchors", f"greedy:delta=1e-12,max=4,min_acc={threshold}",
                 "--epochs", "4", "--out", str(skip_out)]) == 0
    skip = testing.check_metrics_json(skip_out, ["num_anchors"])
    expected = [epoch for epoch, acc in enumerate(accs, 1) if acc >= threshold or epoch == 4]
    assert [skip[f"anchor_{i}_epoch"] for i in range(skip["num_anchors"])] == expected
    assert len(expected) < 4

    kd_out = tmp_path / "kd"
    assert main(["kd", "--route", route, "--epochs", "2", "--out", str(kd_out)]) == 0
    kd = testing.check_metrics_json(kd_out, ["test_acc"])
    assert kd["num_anchors"] == 1 and kd["anchor_0_epoch"] == 4

    # never overwrite results silently; wrong seed would leak the teacher's split
    assert main(["kd", "--route", route, "--epochs", "2", "--out", str(kd_out)]) == 2
    assert main(["kd", "--route", route, "--epochs", "2", "--seed", "1",
                 "--out", str(tmp_path / "kd2")]) == 2
    assert main(["distill", "--route", route, "--anchors", "eeis:9",
                 "--out", str(tmp_path / "too_many")]) == 2
    assert not (tmp_path / "too_many").exists()  # a failed run leaves nothing behind


def test_train_teacher_overwrite_replaces_the_route(tmp_path):
    out = tmp_path / "teacher"
    assert main(["train-teacher", "--out", str(out), "--model", "mlp_tiny", "--epochs", "2"]) == 0
    assert main(["train-teacher", "--out", str(out), "--model", "mlp_tiny", "--epochs", "1"]) == 2
    assert main(["train-teacher", "--out", str(out), "--model", "mlp_tiny", "--epochs", "1", "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["route_checkpoints"] == 1
    assert [r["epoch"] for r in json.loads((out / "route" / "route.json").read_text())["records"]] == [1]
    # the longer route's second checkpoint is not left beside the new, shorter route
    assert sorted(p.name for p in (out / "route").iterdir()) == [
        "epoch_0001.safetensors", "epoch_0001.safetensors.json", "route.json"]


def test_corrupt_intermediate_checkpoint_is_reported_before_training(tmp_path, capsys):
    teacher_out = tmp_path / "teacher"
    assert main(["train-teacher", "--out", str(teacher_out), "--epochs", "3"]) == 0
    (teacher_out / "route" / "epoch_0002.safetensors").write_bytes(b"\x00" * 16)
    assert main(["distill", "--route", str(teacher_out / "route"), "--anchors", "eeis:3",
                 "--epochs", "3", "--out", str(tmp_path / "rco")]) == 2
    assert "epoch_0002.safetensors (epoch 2) is corrupt" in capsys.readouterr().err
    assert not (tmp_path / "rco").exists()


def test_own_arrays_and_lightning_scale_options(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    np.savez(tmp_path / "mine.npz", x=x, y=(x[:, 0] > 0).astype(np.int64))
    teacher_out = tmp_path / "teacher"
    assert main(["train-teacher", "--data", f"npz:{tmp_path / 'mine.npz'}", "--epochs", "3",
                 "--devices", "1", "--strategy", "auto", "--precision", "32-true",
                 "--out", str(teacher_out)]) == 0
    assert testing.check_metrics_json(teacher_out, ["teacher_test_acc"])["route_checkpoints"] == 3
    assert main(["kd", "--route", str(teacher_out / "route"), "--epochs", "2",
                 "--out", str(tmp_path / "kd")]) == 0  # data and split from the route
    assert main(["kd", "--route", str(teacher_out / "route"), "--epochs", "2", "--devices", "0",
                 "--out", str(tmp_path / "bad")]) == 2


def test_bad_route_exits_with_a_clear_error(tmp_path, capsys):
    assert main(["distill", "--route", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "route folder" in capsys.readouterr().err


def test_demo(tmp_path, capsys):
    assert main(["demo", "--epochs", "4", "--out", str(tmp_path)]) == 0
    metrics = testing.check_metrics_json(tmp_path, ["teacher_acc", "kd_acc", "rco_eeis_acc"])
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("teacher_acc", "kd_acc", "rco_eeis_acc"))
    assert (tmp_path / "route" / "route.json").is_file()
    capsys.readouterr()
    # --overwrite reaches the route recorder: OUT/route already holds the first run's route
    assert main(["demo", "--epochs", "4", "--overwrite", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    assert testing.check_metrics_json(tmp_path, ["teacher_acc"])["teacher_acc"] == metrics["teacher_acc"]


def test_reduced_validation_run(tmp_path):
    """Spec section 4's test-suite version: 2 seeds, 10 teacher epochs, digits only."""
    assert main(["validate", "--out", str(tmp_path), "--seeds", "2", "--tasks", '["digits"]',
                 "--experiment.preset", "reduced", "--workers", "1"]) == 0
    metrics = testing.check_metrics_json(tmp_path, [n.format(t="digits") for n in REQUIRED])
    assert metrics["num_seeds_digits"] == 2
    assert metrics["teacher_acc_digits"] > 0.85  # 10 epochs already learn digits
    assert all(metrics[f"{arm}_acc_digits"] > 0.5 for arm in ("ce", "kd", "rco_eeis", "rco_greedy",
                                                               "rco_reverse"))
    table = (tmp_path / "results.md").read_text()
    assert "rco_eeis" in table and "2,5,7,10" in table  # EEIS m = 4 on a 10-checkpoint route
    assert "10,7,5,2" in table  # the reverse-order control
    assert (tmp_path / "accuracy.png").is_file() and (tmp_path / "kl_to_final.png").is_file()
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert {r["seed"] for r in runs} == {0, 1}


@pytest.mark.slow
def test_benchmark(tmp_path):
    assert main(["benchmark", "--epochs", "4", "--repeats", "1", "--out", str(tmp_path)]) == 0
    record = testing.check_metrics_json(tmp_path, ["route_time_ratio", "rco_over_kd_throughput",
                                                   "checkpoint_bytes_per_epoch"])
    assert record["route_time_ratio"] > 0 and record["checkpoint_bytes_per_epoch"] > 0


def test_an_interrupted_benchmark_leaves_no_scratch_folder(tmp_path, monkeypatch):
    """The scratch routes (OUT/rco-bench-*) go with a failed run, so the next run into the same
    --out is not refused as non-empty."""
    import paperzoo.core.lightning

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(paperzoo.core.lightning, "make_trainer", interrupted)
    out = tmp_path / "bench"
    with pytest.raises(KeyboardInterrupt):
        main(["benchmark", "--epochs", "4", "--repeats", "1", "--out", str(out)])
    assert not out.exists()  # nothing left: the CLI removed the folder it created
    from paperzoo.rco.benchmark import route_cost

    with pytest.raises(KeyboardInterrupt):
        route_cost(tmp_path, epochs=4, repeats=1)
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_example_config_parses(path, tmp_path):
    verb = {"train": "train-teacher", "cifar100": "train-teacher", "distill": "distill",
            "validate": "validate"}[path.stem.split("_")[0]]
    extra = ["--route", "r"] if verb == "distill" else []
    config = testing.check_print_config(main, verb, ["--config", str(path), *extra], tmp_path)
    if verb == "validate":
        assert config["experiment"]["preset"] == "reduced" and config["seeds"] == 2


def test_an_interrupted_train_teacher_leaves_only_whole_checkpoints(tmp_path, monkeypatch):
    """Spec: never a half-written route. Ctrl-C in the middle of epoch 3 of 4: route.json lists
    only the checkpoints of the finished epochs, and each exists and loads."""
    import signal

    import lightning as L

    import paperzoo.rco.pipeline
    from paperzoo.rco.route import TeacherRoute

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 2 and batch_idx == 1:
                raise KeyboardInterrupt

    make_trainer = paperzoo.rco.pipeline.make_trainer

    def with_ctrl_c(*args, callbacks=(), **kwargs):
        return make_trainer(*args, callbacks=[*callbacks, CtrlC()], **kwargs)

    monkeypatch.setattr(paperzoo.rco.pipeline, "make_trainer", with_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    out = tmp_path / "teacher"
    try:  # Lightning turns the interrupt into exit status 1
        with pytest.raises((KeyboardInterrupt, SystemExit)):
            main(["train-teacher", "--out", str(out), "--model", "mlp_tiny", "--epochs", "4"])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C after one
    assert not (out / "metrics.json").exists()
    route_json = out / "route" / "route.json"
    # the route of the finished epochs is written as each ends: whole, listing only what exists
    records = json.loads(route_json.read_text())["records"]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all((out / "route" / r["file"]).is_file() for r in records)
    route = TeacherRoute(out / "route")  # checked whole: every header is read
    for index in range(len(route)):
        assert all(bool(p.isfinite().all()) for p in route.load(index).parameters())


def test_own_folder_of_mixed_sizes_and_gapped_labels_from_the_cli(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(5):
            size = (6, 6) if i % 2 else (7, 9)
            Image.fromarray(np.full(size, 40 * i, dtype=np.uint8)).save(tmp_path / "imgs" / name / f"{i}.png")
    folder = f"folder:{tmp_path / 'imgs'}"
    assert main(["train-teacher", "--data", folder, "--model", "cnn_tiny", "--epochs", "1",
                 "--out", str(tmp_path / "mixed")]) == 2
    assert "pass image_size (--image_size N on the command line)" in capsys.readouterr().err
    teacher_out = tmp_path / "teacher"
    assert main(["train-teacher", "--data", folder, "--image_size", "8", "--model", "cnn_tiny",
                 "--epochs", "2", "--out", str(teacher_out)]) == 0
    assert json.loads((teacher_out / "route" / "route.json").read_text())["extra"]["image_size"] == 8
    # kd reads the data and its resize from the route, so the test split matches
    assert main(["kd", "--route", str(teacher_out / "route"), "--student", "cnn_tiny",
                 "--epochs", "1", "--out", str(tmp_path / "kd")]) == 0
    assert main(["train-teacher", "--image_size", "8", "--out", str(tmp_path / "digits")]) == 2
    assert "--image_size applies only to --data folder:DIR" in capsys.readouterr().err

    x = np.zeros((40, 3), dtype=np.float32)
    np.savez(tmp_path / "gap.npz", x=x, y=np.array([3, 7, 11, 20])[np.arange(40) % 4])
    assert main(["train-teacher", "--data", f"npz:{tmp_path / 'gap.npz'}", "--epochs", "1",
                 "--out", str(tmp_path / "gap")]) == 2  # not a silent 21-class model
    assert "4 distinct labels {3, 7, 11, 20} (expected 0..3)" in capsys.readouterr().err
    assert not (tmp_path / "gap").exists()
