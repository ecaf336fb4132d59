"""Attack (spec 1.1): rho_t against hand values, p = 0 is the DDPM loss, poisoning shares, triggers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paperzoo.diffcleanse.attack import BadDiffusionLoss, PoisonedData, rho
from paperzoo.diffcleanse.model import make_scheduler
from paperzoo.diffcleanse.triggers import check_trigger, make_target, make_trigger


def test_rho_matches_hand_values():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    values = rho(1 - betas, torch.cumprod(1 - betas, 0))
    for t in (0, 1, 500, 999):
        beta = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(t + 1)]
        a, ab = 1 - beta[t], math.prod(1 - b for b in beta)
        assert values[t].item() == pytest.approx(
            (1 - math.sqrt(a)) * math.sqrt(1 - ab) / (1 - a), rel=1e-9
        )
    assert values[0].item() == pytest.approx((1 - math.sqrt(1 - 1e-4)) / math.sqrt(1e-4), rel=1e-9)
    sched = make_scheduler("ddpm")
    assert torch.allclose(sched.betas.double(), betas, atol=1e-7)


def test_ode_weight_is_twice_sde():
    sched = make_scheduler("ddpm")
    assert torch.allclose(BadDiffusionLoss(sched, "ode").k, 2 * BadDiffusionLoss(sched, "sde").k)
    with pytest.raises(ValueError, match="solver"):
        BadDiffusionLoss(sched, "euler")


def test_zero_poison_is_the_ddpm_loss(micro):
    sched = make_scheduler("ddpm")
    loss_fn = BadDiffusionLoss(sched, "ode")
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    eps, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 500, 999])
    got = loss_fn(micro, x, torch.zeros_like(x), t=t, eps=eps)
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = F.mse_loss(micro(ab.sqrt() * x + (1 - ab).sqrt() * eps, t).sample, eps)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_poisoned_loss_shifts_input_and_target(micro):
    sched = make_scheduler("ddpm")
    loss_fn = BadDiffusionLoss(sched, "sde")
    y, r = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    eps, t = torch.zeros(1, 1, 8, 8), torch.tensor([999])
    ab = sched.alphas_cumprod[999]
    assert torch.allclose(loss_fn.noisy(y, r, eps, t), (1 - ab.sqrt()) * r)
    assert torch.allclose(loss_fn.target(r, eps, t), loss_fn.k[999] * r)


def test_poisoned_data_share_and_rows():
    images = torch.rand(50, 1, 8, 8)
    g, y = make_trigger("box", (1, 8, 8)), make_target("cat", (1, 8, 8))
    data = PoisonedData(images, g, y, 0.2, seed=0)
    assert int(data.poisoned.sum()) == 10
    i = int(data.poisoned.nonzero()[0])
    j = int((~data.poisoned).nonzero()[0])
    assert torch.equal(data[i][0], y) and torch.equal(data[i][1], g)
    assert torch.equal(data[j][0], images[j]) and not data[j][1].any()
    for bad in (1.5, -0.1, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"poison_rate must be in \[0, 1\], got"):
            PoisonedData(images, g, y, bad)
    with pytest.raises(ValueError, match="trigger has shape"):
        PoisonedData(images, torch.zeros(1, 4, 4), y, 0.1)


def test_triggers_and_targets_at_any_size():
    for size in (8, 16):
        for name in ("box", "stop", "glasses"):
            g = make_trigger(name, (1, size, size))
            assert g.shape == (1, size, size) and g.abs().sum() > 0 and (g == 0).any()
        for name in ("cat", "hat", "digit:3"):
            y = make_target(name, (1, size, size))
            assert y.shape == (1, size, size) and y.min() >= -1 and y.max() <= 1
    assert make_target("cat", (3, 16, 16)).shape == (3, 16, 16)
    with pytest.raises(ValueError, match="unknown trigger"):
        make_trigger("star", (1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        check_trigger(torch.zeros(1, 4, 4), (1, 8, 8))
    with pytest.raises(ValueError, match="non-finite"):
        check_trigger(torch.full((1, 8, 8), float("nan")), (1, 8, 8))


def test_a_trigger_file_that_is_no_npy_array_of_numbers_is_refused_naming_it(tmp_path):
    """file:PATH reads a .npy on purpose; a pickled, mislabelled, unreadable or non-numeric one
    (and a file that is no image either) is a ValueError naming the file, never unpickled."""
    import pickle
    import re

    import numpy as np

    good = np.zeros((8, 8), dtype=np.float32)
    good[6:, 6:] = 2.0
    np.save(tmp_path / "good.npy", good)
    read = make_trigger(f"file:{tmp_path / 'good.npy'}", (1, 8, 8))
    assert torch.allclose(read[0], torch.from_numpy(good), atol=1e-6)
    np.save(tmp_path / "pickled.npy", np.array([good, "x"], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "archive.npz", trigger=good)
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")  # an archive under a .npy name
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "flat.npy", np.zeros(8, dtype=np.float32))
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "raw.npy").write_bytes(pickle.dumps(good))
    (tmp_path / "trigger.pkl").write_bytes(pickle.dumps(good))
    for name in (
        "pickled.npy",
        "archive.npy",
        "text.npy",
        "flat.npy",
        "garbage.npy",
        "raw.npy",
        "trigger.pkl",
    ):
        path = tmp_path / name
        with pytest.raises(ValueError, match=re.escape(str(path))):
            make_trigger(f"file:{path}", (1, 8, 8))
        with pytest.raises(ValueError, match=re.escape(str(path))):
            make_target(f"file:{path}", (1, 8, 8))
    # a target file is in model space [-1, 1]: a 0-255 one is refused, never clamped to white
    np.save(tmp_path / "target.npy", np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8))
    assert make_target(f"file:{tmp_path / 'target.npy'}", (1, 8, 8)).min() == -1.0
    np.save(tmp_path / "target255.npy", np.linspace(0, 255, 64, dtype=np.float32).reshape(8, 8))
    with pytest.raises(
        ValueError, match=r"target255\.npy: values in \[0, 255\], expected \[-1, 1\]"
    ):
        make_target(f"file:{tmp_path / 'target255.npy'}", (1, 8, 8))


def test_backdoor_model_refuses_a_poison_rate_outside_0_1(micro):
    from paperzoo.diffcleanse.pipeline import backdoor_model

    images = torch.rand(4, 1, 8, 8) * 2 - 1
    g, y = make_trigger("box", (1, 8, 8)), make_target("cat", (1, 8, 8))
    for bad in (-0.1, -1.0, 1.01):
        with pytest.raises(ValueError, match=rf"poison_rate must be in \[0, 1\], got {bad}"):
            backdoor_model(micro, images, g, y, bad, steps=1, batch_size=2)
