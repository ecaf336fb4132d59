"""The teacher route: recording, lazy bit-exact reloads in eval mode, and every bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from paperzoo.core.checkpoint import load_state_dict
from paperzoo.rco.callbacks import RouteRecorder
from paperzoo.rco.route import ROUTE_FILE, TeacherRoute


def test_route_records_every_epoch_with_val_acc(mlp_route):
    assert len(mlp_route) == 6 and mlp_route.epochs == [1, 2, 3, 4, 5, 6]
    assert all(acc is not None and 0.0 <= acc <= 1.0 for acc in mlp_route.val_accs)
    assert mlp_route.input_shape == [1, 1, 8, 8]
    steps = [record.step for record in mlp_route]
    assert steps == sorted(steps) and steps[0] > 0
    assert mlp_route.extra["data"] == "digits" and mlp_route.extra["seed"] == 0
    assert len(mlp_route.extra["test_split"]) == 16  # the recorder adds the split's fingerprint


def test_route_checkpoint_round_trips_bit_exactly_with_bn_buffers(cnn_route):
    raw = cnn_route.state_dict(1)
    assert any("running_mean" in key for key in raw), "BatchNorm buffers must be on the route"
    assert any(key.endswith("num_batches_tracked") for key in raw)
    model = cnn_route.load(1)
    loaded = model.state_dict()
    assert set(loaded) == set(raw)
    for key, value in raw.items():
        assert torch.equal(loaded[key], value), key
    running_means = [v for k, v in raw.items() if k.endswith("running_mean")]
    assert any(v.abs().sum() > 0 for v in running_means), "running statistics were not trained"


def test_loaded_anchor_is_frozen_and_in_eval_mode(mlp_route):
    teacher = mlp_route.load(2)
    assert not teacher.training and all(not m.training for m in teacher.modules())
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.rand(16, 1, 8, 8)
    # mlp_teacher has dropout 0.2: identical outputs prove eval mode.
    assert torch.equal(teacher(x), teacher(x))


def test_checkpoints_differ_along_the_route(mlp_route):
    first, last = mlp_route.state_dict(0), mlp_route.state_dict(-1)
    assert any(not torch.equal(first[k], last[k]) for k in first)


def _copy_route(route, tmp_path):
    target = tmp_path / "route"
    shutil.copytree(route.dirpath, target)
    return target


def test_missing_route_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TeacherRoute(tmp_path / "nope")


def test_folder_without_route_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no route.json"):
        TeacherRoute(tmp_path)


def test_empty_route(mlp_route, tmp_path):
    target = _copy_route(mlp_route, tmp_path)
    index = json.loads((target / ROUTE_FILE).read_text())
    index["records"] = []
    (target / ROUTE_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match="is empty"):
        TeacherRoute(target)


def test_route_listing_a_missing_file(mlp_route, tmp_path):
    target = _copy_route(mlp_route, tmp_path)
    (target / "epoch_0003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="epoch_0003.safetensors.*missing"):
        TeacherRoute(target)


def test_corrupt_intermediate_checkpoint_fails_when_the_route_is_opened(mlp_route, tmp_path):
    target = _copy_route(mlp_route, tmp_path)
    (target / "epoch_0002.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"checkpoint epoch_0002\.safetensors \(epoch 2\) is corrupt"):
        TeacherRoute(target)


def test_truncated_checkpoint_fails_when_the_route_is_opened(mlp_route, tmp_path):
    target = _copy_route(mlp_route, tmp_path)
    path = target / "epoch_0004.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"epoch_0004\.safetensors \(epoch 4\) is corrupt"):
        TeacherRoute(target)


def test_checkpoint_with_other_tensors_fails_when_opened(mlp_route, tmp_path):
    from paperzoo.core.checkpoint import save_weights
    from paperzoo.rco.model import create_model

    target = _copy_route(mlp_route, tmp_path)
    save_weights(create_model("mlp_tiny"), target / "epoch_0003.safetensors")
    with pytest.raises(ValueError, match=r"epoch_0003\.safetensors \(epoch 3\) holds other tensors"):
        TeacherRoute(target)


def test_opening_reads_headers_not_tensors(mlp_route, monkeypatch):
    import paperzoo.rco.route as route_module

    monkeypatch.setattr(route_module, "load_state_dict", lambda path: pytest.fail("tensors read"))
    assert len(TeacherRoute(mlp_route.dirpath)) == 6


def test_mismatched_checkpoint_names_key_and_shape(mlp_route, tmp_path):
    target = _copy_route(mlp_route, tmp_path)
    index = json.loads((target / ROUTE_FILE).read_text())
    index["model"]["overrides"]["hidden"] = [128, 256]
    (target / ROUTE_FILE).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"features\.1\.weight.*shape"):
        TeacherRoute(target).load(0)


def test_corrupt_route_json(tmp_path):
    (tmp_path / ROUTE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"route index .*route\.json is not valid JSON: .* at line 1, column 2"):
        TeacherRoute(tmp_path)
    (tmp_path / ROUTE_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a valid route index: it holds a JSON list, not an object"):
        TeacherRoute(tmp_path)


def test_test_split_check(mlp_route):
    from paperzoo.rco.data import DigitsDataModule, split_fingerprint

    mlp_route.check_test_split(split_fingerprint(DigitsDataModule(seed=0)))
    with pytest.raises(ValueError, match="test split differs.*'seed': 0"):
        mlp_route.check_test_split(split_fingerprint(DigitsDataModule(seed=1)))
    with pytest.warns(UserWarning, match="cannot be compared"):
        mlp_route.check_test_split(None)


def test_recorder_refuses_an_existing_route(mlp_route, digits_module):
    from paperzoo.core.lightning import make_trainer
    from paperzoo.rco.module import TeacherModule

    trainer = make_trainer(None, max_epochs=1, logger=False, progress_bar=False,
                           callbacks=[RouteRecorder(mlp_route.dirpath)])
    with pytest.raises(FileExistsError, match="already holds a route"):
        trainer.fit(TeacherModule(model_overrides={"in_features": 64}), datamodule=digits_module)
    assert len(TeacherRoute(mlp_route.dirpath)) == 6


def test_recorder_every_n_epochs_keeps_the_last(tmp_path, digits_module):
    from paperzoo.core.lightning import make_trainer
    from paperzoo.rco.module import TeacherModule

    trainer = make_trainer(None, max_epochs=5, logger=False, progress_bar=False,
                           callbacks=[RouteRecorder(tmp_path / "r", every_n_epochs=2)],
                           limit_train_batches=2)
    trainer.fit(TeacherModule("mlp_tiny", max_epochs=5), datamodule=digits_module)
    route = TeacherRoute(tmp_path / "r")
    assert route.epochs == [2, 4, 5]
    assert set(load_state_dict(route.path(-1))) == set(route.load(-1).state_dict())
    with pytest.raises(ValueError, match="every_n_epochs"):
        RouteRecorder(tmp_path, every_n_epochs=0)


def test_train_teacher_seed_makes_the_route_reproducible(tmp_path, digits_module):
    """``seed`` fixes the preset's initial weights and its dropout whatever the caller's global
    generator holds: two seeded calls record bit-identical checkpoints, unseeded calls after
    different global seeds do not."""
    from paperzoo.rco.pipeline import train_teacher

    def weights(name: str, global_seed: int, seed: int | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        result = train_teacher(digits_module, tmp_path / name, "mlp_teacher",
                               {"in_features": 64, "num_classes": 10}, epochs=1, seed=seed)
        return load_state_dict(result.route.path(-1))

    a, b = weights("a", 1, seed=5), weights("b", 2, seed=5)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c, d = weights("c", 1, seed=None), weights("d", 2, seed=None)
    assert not all(torch.equal(c[k], d[k]) for k in c)
