"""Samplers: same init -> same output, no clipping, exact call counters; model folders round trip."""

from __future__ import annotations

import json

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
