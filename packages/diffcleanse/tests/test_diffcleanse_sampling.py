"""Samplers: same init -> same output, no clipping, exact call counters; model folders round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

from paperzoo.diffcleanse.model import create_model, list_models, load_unet, save_unet
from paperzoo.diffcleanse.sampling import BlackBoxSampler, sample


def test_presets_build_with_overrides():
    assert {"micro", "tiny", "tiny_attn", "ddpm_cifar10", "paper"} <= set(list_models())
    unet = create_model("micro", block_out_channels=(8, 16))
    assert unet.config.block_out_channels == (8, 16) or list(unet.config.block_out_channels) == [
        8,
        16,
    ]
    with pytest.raises(ValueError, match="norm_num_groups"):
        create_model("micro", block_out_channels=(12, 20))


def test_same_init_same_output_and_no_clipping(micro):
    init = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    a = sample(micro, init=init, steps=5)
    b = sample(micro, init=init, steps=5)
    assert torch.equal(a, b)
    assert a.abs().max() > 1.0  # an untrained model's samples leave [-1, 1]: nothing clips them
    c = sample(micro, init=init, steps=5, kind="ddpm", generator=torch.Generator().manual_seed(1))
    d = sample(micro, init=init, steps=5, kind="ddpm", generator=torch.Generator().manual_seed(1))
    assert torch.equal(c, d)
    with pytest.raises(ValueError, match="steps"):
        sample(micro, init=init, steps=0)
    with pytest.raises(ValueError, match="steps"):
        sample(micro, init=init, steps=1001)
    with pytest.raises(ValueError, match="sample shape"):
        sample(micro, init=torch.randn(2, 1, 4, 4), steps=2)


def test_black_box_counters(micro):
    sampler = BlackBoxSampler(micro, steps=3)
    sampler(torch.randn(4, 1, 8, 8))
    sampler(torch.randn(2, 1, 8, 8))
    assert sampler.calls == 2 and sampler.unet_evals == 3 * 6


def test_folder_round_trip_and_bad_folders(micro, tmp_path):
    save_unet(micro, tmp_path / "m")
    loaded, sched = load_unet(tmp_path / "m")
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 900])
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, micro(x, t).sample)
    assert sched["num_train_timesteps"] == 1000
    micro.save_pretrained(str(tmp_path / "bare"))
    assert load_unet(tmp_path / "bare")[0].config.sample_size == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a diffusers UNet folder: no config.json"):
        load_unet(tmp_path / "empty")
    config = json.loads((tmp_path / "bare" / "config.json").read_text())
    config["_class_name"] = "UNet2DConditionModel"
    (tmp_path / "wrong").mkdir()
    (tmp_path / "wrong" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="_class_name"):
        load_unet(tmp_path / "wrong")
    config["_class_name"] = "UNet2DModel"
    (tmp_path / "wrong" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no weights file"):
        load_unet(tmp_path / "wrong")
    (tmp_path / "wrong" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="pickled weights are refused"):
        load_unet(tmp_path / "wrong")
    (tmp_path / "wrong" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_unet(tmp_path / "wrong")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        load_unet(tmp_path / "nowhere")
    assert isinstance(
        UNet2DModel.from_pretrained(str(tmp_path / "m"), subfolder="unet"), UNet2DModel
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_train_timesteps", 500),
        ("beta_schedule", "squaredcos_cap_v2"),
        ("beta_start", 1e-3),
        ("beta_end", 0.012),
        ("prediction_type", "v_prediction"),
        ("trained_betas", [1e-4] * 1000),
        ("_class_name", "ScoreSdeVeScheduler"),
    ],
)
def test_a_scheduler_other_than_the_spec_ddpm_is_refused(micro, tmp_path, field, value):
    """The losses, pruning and save_unet use the spec's DDPM; a folder whose scheduler differs is
    refused naming the file and the field instead of being sampled with one schedule and trained
    with another."""
    save_unet(micro, tmp_path / "m")
    sched_file = tmp_path / "m" / "scheduler" / "scheduler_config.json"
    config = json.loads(sched_file.read_text())
    assert load_unet(tmp_path / "m")[1] == config  # the spec's own schedule loads
    config[field] = value
    sched_file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"scheduler_config\.json.*{field}"):
        load_unet(tmp_path / "m")


def test_scheduler_fields_left_out_take_the_spec_defaults_and_bad_json_is_named(micro, tmp_path):
    save_unet(micro, tmp_path / "m")
    sched_file = tmp_path / "m" / "scheduler" / "scheduler_config.json"
    sched_file.write_text(json.dumps({"_class_name": "DDIMScheduler", "beta_end": 0.02}))
    assert load_unet(tmp_path / "m")[1]["beta_end"] == 0.02
    sched_file.write_text("{not json")
    with pytest.raises(ValueError, match=r"scheduler_config\.json is not valid JSON"):
        load_unet(tmp_path / "m")


def test_sample_without_a_generator_is_seeded_not_the_global_rng(micro):
    """The default noise is a seeded generator's: the global RNG's state changes nothing."""
    a = sample(micro, 3, steps=2)
    torch.rand(7)  # moves the global RNG
    b = sample(micro, 3, steps=2)
    assert torch.equal(a, b)
    assert torch.equal(a, sample(micro, 3, steps=2, generator=torch.Generator().manual_seed(0)))
    init = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    c = sample(micro, init=init, steps=3, kind="ddpm")  # the per-step noise too
    torch.rand(7)
    assert torch.equal(c, sample(micro, init=init, steps=3, kind="ddpm"))


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def test_an_interrupted_save_leaves_the_old_folder_whole(micro, tmp_path):
    """save_unet builds the folder beside its place and swaps it in: a save killed midway (here:
    the scheduler write raises) leaves the old config with the old weights, nothing beside it."""
    save_unet(micro, tmp_path / "m")
    torch.manual_seed(1)
    other = create_model("micro", block_out_channels=(8, 16))

    class Killed:
        def save_pretrained(self, path):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_unet(other, tmp_path / "m", scheduler=Killed())
    loaded, sched = load_unet(tmp_path / "m")
    assert list(loaded.config.block_out_channels) == [16, 32] and _same_weights(loaded, micro)
    assert sched["num_train_timesteps"] == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staged folder left
    # a complete save replaces the model (stale model files dropped, the user's own file kept)
    (tmp_path / "m" / "notes.txt").write_text("mine")
    (tmp_path / "m" / "recipe.json").write_text("{}")  # describes the old weights
    save_unet(other, tmp_path / "m")
    assert _same_weights(load_unet(tmp_path / "m")[0], other)
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "m" / "recipe.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert isinstance(
        UNet2DModel.from_pretrained(str(tmp_path / "m"), subfolder="unet"), UNet2DModel
    )
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="a file of that name exists"):
        save_unet(micro, tmp_path / "file")


def test_a_zoo_cache_write_killed_before_its_recipe_never_reuses_the_wrong_model(
    micro, tmp_path, monkeypatch
):
    """Cache recipe A; recipe B's save is killed before its recipe.json is written; asking for A
    again must not return B's weights as A (the old in-place save left A's recipe beside B's)."""
    import paperzoo.core.results as results
    from paperzoo.diffcleanse.validation import _cached

    torch.manual_seed(1)
    other = create_model("micro")
    recipe_a, recipe_b = {"steps": 1}, {"steps": 2}
    assert _cached(tmp_path, "base", recipe_a, lambda: micro)[1] is False
    write = results.atomic_write_text

    def killed_at_the_recipe(path, text):
        if Path(path).name == "recipe.json":
            raise KeyboardInterrupt
        return write(path, text)

    monkeypatch.setattr(results, "atomic_write_text", killed_at_the_recipe)
    with pytest.raises(KeyboardInterrupt):
        _cached(tmp_path, "base", recipe_b, lambda: other)
    monkeypatch.undo()
    unet, reused = _cached(tmp_path, "base", recipe_a, lambda: micro)
    assert _same_weights(unet, micro) and not _same_weights(unet, other)
    assert reused  # A's folder survived whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]
    unet, reused = _cached(tmp_path, "base", recipe_b, lambda: other)  # B rebuilt, then reused
    assert not reused and _cached(tmp_path, "base", recipe_b, lambda: micro)[1]
    assert _same_weights(load_unet(tmp_path / "base")[0], other)
