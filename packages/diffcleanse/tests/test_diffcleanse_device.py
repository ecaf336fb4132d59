"""``--device`` reaches the work each verb runs outside Lightning: sampling, BBTI, Elijah, the
pruning importance and evaluation get the UNet on the requested device, not the CPU copy a load
gives or Lightning's teardown leaves.

No GPU is needed: a spy (conftest's ``placed``) records on every ``UNet2DModel`` the device of
its last ``.to(device)``; any other move (``.cpu()``, Lightning moving or tearing down the module
that holds it) clears the record. Every UNet evaluation outside a Lightning fit must find the
verb's device recorded (each of these tests fails on the code that sampled on the CPU copy)."""

from __future__ import annotations

import pytest
import torch

from paperzoo.diffcleanse.model import create_model, on_device, save_unet


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    return str(save_unet(create_model("micro"), tmp_path / "micro"))


def test_on_device_resolves(micro):
    assert on_device(micro, "auto") is micro and next(micro.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        on_device(micro, "tpu")


def test_evaluate_detect_remove_get_the_device(tmp_path, folder, placed):
    from paperzoo.diffcleanse import commands

    commands.evaluate(tmp_path / "ev", folder, "stop", "hat", 2, 0, 1, device="cpu")
    placed.check("cpu")
    placed.clear()
    commands.detect(
        tmp_path / "det", folder, iters=1, batch=2, sampler_steps=1, n_eval=2,
        calibration="none", device="cpu",
    )  # fmt: skip
    placed.check("cpu")
    placed.clear()
    trigger = tmp_path / "det" / "trigger_inverted.safetensors"
    commands.remove(
        tmp_path / "rm", folder, str(trigger), ratio=0.2, t_start=998, ft_steps=1, n_ft=4,
        batch_size=2, prune_batch=2, device="cpu",
    )  # fmt: skip
    placed.check("cpu")  # the fine-tune samples and the pruning importance


def test_backdoor_evaluates_on_the_device(tmp_path, folder, placed):
    from paperzoo.diffcleanse import commands

    commands.backdoor(tmp_path / "bd", folder, steps=1, batch_size=4, poison_rate=0.5, device="cpu")
    placed.check("cpu")


def test_validate_runs_on_the_device(tmp_path, placed):
    from paperzoo.diffcleanse.validation import reduced_config, run_validation

    config = reduced_config(
        base_steps=1, attack_steps=1, clean_steps=1, batch_size=4, eval_steps=1, n_trigger=2,
        n_clean=2, bbti_iters=1, bbti_batch=2, bbti_steps=1, n_eval=2, ft_steps=1, ft_batch=2,
        n_ft=4, prune_batch=2, classifier_steps=1, elijah_iters=1, t_start=998,
        report_only=True,
    )  # fmt: skip
    run_validation(config, "cpu")
    placed.check("cpu")  # evaluation, BBTI, Elijah, the samples, the importance, the removal scores
