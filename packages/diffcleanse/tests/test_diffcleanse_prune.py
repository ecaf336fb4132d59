"""Stage 2a: structural pruning of ResNet inner channels, the Taylor score, combine rules,
baselines at equal counts, and a pruned model's diffusers round trip."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DModel

from paperzoo.diffcleanse import prune as prune_module
from paperzoo.diffcleanse.model import create_model, load_unet, save_unet
from paperzoo.diffcleanse.prune import (
    CleanTaylorPruner,
    DiffCleansePruner,
    MagnitudePruner,
    RandomPruner,
    _group_scores,
    removal_counts,
    resnet_groups,
    taylor_importance,
)


@pytest.mark.parametrize("preset", ["micro", "tiny", "tiny_attn"])
def test_pruning_runs_and_keeps_conv_out(preset):
    torch.manual_seed(0)
    unet = create_model(preset)
    size = unet.config.sample_size
    x0 = torch.rand(4, 1, size, size) * 2 - 1
    trigger = torch.randn(1, size, size)
    conv_out = unet.conv_out.weight.detach().clone()
    for ratio in (0.02, 0.1, 0.3):
        pruned, report = DiffCleansePruner(ratio, t_start=996, batch=4).prune(unet, x0, trigger)
        widths = {k: b.conv1.out_channels for k, b in resnet_groups(unet).items()}
        expected = removal_counts(widths, ratio)
        assert {k: len(v) for k, v in report.removed.items()} == expected
        for name, block in resnet_groups(pruned).items():
            assert block.conv1.out_channels == widths[name] - expected[name]
            assert block.norm2.num_channels % block.norm2.num_groups == 0
        assert (
            torch.equal(pruned.conv_out.weight, conv_out)
            and report.params_after < report.params_before
        )
        out = pruned(torch.randn(2, 1, size, size), torch.tensor([1, 999])).sample
        assert out.shape == (2, 1, size, size)
    assert torch.equal(unet.conv_out.weight, conv_out)


def test_taylor_score_is_sum_abs_w_times_grad():
    unet = create_model("micro")
    block = next(iter(resnet_groups(unet).values()))
    for p in block.parameters():
        p.grad = torch.full_like(p, 2.0)
    with torch.no_grad():
        block.conv1.weight.fill_(1.0)
        block.conv1.weight[3] = -3.0
    scores = _group_scores(block, lambda w: (w * w.grad).abs())
    conv1 = block.conv1.weight.abs().flatten(1).sum(1) * 2
    conv2 = block.conv2.weight.abs().transpose(0, 1).flatten(1).sum(1) * 2
    parts = [
        conv1,
        conv2,
        block.conv1.bias.abs() * 2,
        block.norm2.weight.abs() * 2,
        block.norm2.bias.abs() * 2,
        block.time_emb_proj.weight.abs().sum(1) * 2,
        block.time_emb_proj.bias.abs() * 2,
    ]
    assert torch.allclose(scores, torch.stack(parts).mean(0))
    assert conv1[3] == 3 * conv1[0]


def test_other_trigger_other_scores_and_bad_t_start(micro):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    a = taylor_importance(micro, x0, torch.ones(1, 8, 8), t_start=995)
    b = taylor_importance(micro, x0, -torch.ones(1, 8, 8), t_start=995)
    assert any(not torch.allclose(a[k], b[k]) for k in a)
    assert all(torch.allclose(v.mean(), torch.tensor(1.0)) for v in a.values())
    for bad in (1000, -1, -900):
        with pytest.raises(ValueError, match=rf"t_start must be in \[0, 1000\), got {bad}"):
            taylor_importance(micro, x0, None, t_start=bad)
        with pytest.raises(ValueError, match=rf"t_start must be in \[0, 1000\).*got {bad}"):
            DiffCleansePruner(0.1, t_start=bad)
        with pytest.raises(ValueError, match=rf"t_start must be in \[0, 1000\).*got {bad}"):
            CleanTaylorPruner(0.1, t_start=bad)
    with pytest.raises(ValueError, match="at least 2"):
        taylor_importance(micro, x0[:1], None, t_start=995)
    with pytest.raises(ValueError, match="shape"):
        taylor_importance(micro, x0, torch.ones(1, 4, 4), t_start=995)


def test_combines_pick_expected_channels(micro, monkeypatch):
    names = list(resnet_groups(micro))
    bd = torch.tensor([5.0, 4.0, 1.0, 0.1] + [1.0] * 12)
    clean = torch.tensor([6.0, 0.5, 0.1, 4.0] + [1.0] * 12)

    def fake(unet, x0, trigger, t_start, seed):
        source = clean if trigger is None else bd
        return {
            n: source.clone()
            if unet.get_submodule(n).conv1.out_channels == 16
            else torch.ones(unet.get_submodule(n).conv1.out_channels)
            for n in names
        }

    monkeypatch.setattr(prune_module, "taylor_importance", fake)
    x0 = torch.zeros(4, 1, 8, 8)
    group = next(n for n in names if micro.get_submodule(n).conv1.out_channels == 16)
    picks = {}
    for combine in ("bd_minus_clean", "sum", "bd_only"):
        pruner = DiffCleansePruner(0.1, batch=4, combine=combine)  # 16 -> remove 2
        picks[combine] = pruner.select(pruner.scores(micro, x0, torch.zeros(1, 8, 8)))[group]
    assert picks["bd_minus_clean"] == [1, 2]  # bd - clean: [-1, 3.5, 0.9, -3.9]
    assert picks["sum"] == [0, 1]  # bd + clean: [11, 4.5, 1.1, 4.1]
    assert picks["bd_only"] == [0, 1]
    clean_pick = CleanTaylorPruner(0.1, batch=4)
    assert clean_pick.select(clean_pick.scores(micro, x0, None))[group] == [2, 1] or sorted(
        clean_pick.select(clean_pick.scores(micro, x0, None))[group]
    ) == [1, 2]


def test_baselines_remove_as_many_channels(micro):
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    counts = {}
    for pruner in (
        RandomPruner(0.1, seed=1),
        MagnitudePruner(0.1),
        CleanTaylorPruner(0.1, t_start=996, batch=4),
        DiffCleansePruner(0.1, t_start=996, batch=4),
    ):
        _, report = pruner.prune(micro, x0, torch.ones(1, 8, 8))
        counts[pruner.method] = {k: len(v) for k, v in report.removed.items()}
    assert len({tuple(sorted(c.items())) for c in counts.values()}) == 1
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            RandomPruner(bad)
    with pytest.raises(ValueError, match="combine"):
        DiffCleansePruner(0.1, combine="max")
    with pytest.raises(ValueError, match="inverted trigger"):
        DiffCleansePruner(0.1).prune(micro, x0, None)


def test_pruned_model_saves_and_reloads_through_diffusers(micro, tmp_path):
    pruned, _ = RandomPruner(0.3, seed=0).prune(micro)
    save_unet(pruned, tmp_path / "pruned")
    assert (tmp_path / "pruned" / "unet" / "pruning.json").is_file()
    loaded, _ = load_unet(tmp_path / "pruned")
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    with torch.no_grad():
        assert (loaded(x, t).sample - pruned(x, t).sample).abs().max() <= 1e-6
    # diffusers refuses the shrunken weights (RuntimeError "size mismatch for ..." without
    # accelerate; ValueError "Cannot load ... expected shape ..." with it), never half-loads them
    with pytest.raises(
        (RuntimeError, ValueError),
        match=r"(size mismatch for|Cannot load).*down_blocks\.0\.resnets\.0\.conv1\.weight",
    ):
        UNet2DModel.from_pretrained(str(tmp_path / "pruned"), subfolder="unet")
    (tmp_path / "pruned" / "unet" / "pruning.json").unlink()
    with pytest.raises(ValueError, match="pruning.json"):
        load_unet(tmp_path / "pruned")
