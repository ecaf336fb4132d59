"""HODINet: presets, shapes, the NHWC permute, gradients, checkpoints, loss, bad input."""

from __future__ import annotations

import pytest
import torch

from paperzoo.core import testing
from paperzoo.hodinet.loss import hybrid_loss, soft_iou_loss
from paperzoo.hodinet.model import TimmEncoder, create_model, list_models, valid_swin_sizes


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("tiny")


def _inputs(size=64, batch=2):
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=g), torch.rand(batch, 1, size, size, generator=g)


def test_registry_lists_presets_and_overrides_win():
    assert {"tiny", "paper", "add_fusion_tiny", "rgb_only_tiny", "depth_only_tiny"} <= set(list_models())
    model = create_model("tiny", channels=16, order=2, stage_fusion="hosf,hocf,hocf,hocf")
    assert model.channels == 16 and model.order == 2
    assert model.stage_fusion == ("hosf", "hocf", "hocf", "hocf")
    with pytest.raises(ValueError, match="tiny"):
        create_model("huge")
    with pytest.raises(ValueError, match="widht"):
        create_model("tiny", widht=3)


def test_tiny_shapes(tiny):
    rgb, depth = _inputs()
    out = tiny(rgb, depth)
    assert out["logits"].shape == (2, 1, 64, 64)
    assert [tuple(s.shape[-2:]) for s in out["side"]] == [(16, 16), (8, 8), (4, 4), (2, 2)]


def test_paper_shapes_at_224_window_7():
    model = create_model("paper", img_size=224, window_size=7).eval()
    assert model.rgb_encoder.channels == [128, 256, 512, 1024]
    assert model.depth_encoder.channels == [256, 512, 1024, 2048]
    with torch.no_grad():
        out = model(*_inputs(224, 1))
    assert out["logits"].shape == (1, 1, 224, 224) and out["side"][3].shape[-1] == 7


def test_swin_features_are_permuted_to_nchw_when_h_w_and_c_agree():
    # stage 1 of swin_mini at 96 px is 24 x 24 with 24 channels: NHWC and NCHW have one shape
    encoder = TimmEncoder("swin_mini", "rgb", 3, img_size=96, window_size=6).eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        raw = encoder.body(x)[0]
        ours = encoder(x)[0]
    assert raw.shape == ours.shape == (1, 24, 24, 24)
    torch.testing.assert_close(ours, raw.permute(0, 3, 1, 2))
    assert not torch.allclose(ours, raw)


@pytest.mark.parametrize("name", ["add_fusion_tiny", "rgb_only_tiny", "depth_only_tiny"])
def test_baselines_share_the_decoder_and_drop_unused_encoders(name):
    model = create_model(name).eval()
    rgb, depth = _inputs()
    with torch.no_grad():
        out = model(rgb if model.uses_rgb else None, depth if model.uses_depth else None)
    assert out["logits"].shape == (2, 1, 64, 64)
    assert (model.depth_encoder is None) == (name == "rgb_only_tiny")
    assert (model.rgb_encoder is None) == (name == "depth_only_tiny")


def test_every_parameter_gets_a_finite_gradient_and_checkpoint_round_trips(tiny, tmp_path):
    rgb, depth = _inputs()
    gt = (torch.rand(2, 1, 64, 64) > 0.5).float()
    testing.check_finite_gradients(tiny, rgb, depth, loss_fn=lambda out: hybrid_loss(out["side"], gt))
    testing.check_checkpoint_roundtrip(tiny, tmp_path)


def test_zero_depth_gives_finite_maps(tiny):
    rgb, depth = _inputs()
    with torch.no_grad():
        assert torch.isfinite(tiny.eval()(rgb, torch.zeros_like(depth))["logits"]).all()


def test_same_seed_same_model():
    torch.manual_seed(7)
    a = create_model("add_fusion_tiny")
    torch.manual_seed(7)
    b = create_model("add_fusion_tiny")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_hybrid_loss_upsamples_sides_and_matches_hand_value():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    side = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    # logits 0: BCE = log 2, p = 0.5: IoU = 4 / (8 + 16*0.5 - 4) = 1/3
    per_output = torch.log(torch.tensor(2.0)) + (1 - 1 / 3)
    torch.testing.assert_close(hybrid_loss(side, target), (1.0 + 0.8) * per_output)
    torch.testing.assert_close(soft_iou_loss(torch.zeros(1, 1, 4, 4), target), torch.tensor(2 / 3))


def test_loss_falls_over_five_steps_on_eight_scenes(scenes):
    torch.manual_seed(0)
    model = create_model("tiny")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rgb, depth, gt = scenes.rgb[:8], scenes.depth[:8], scenes.gt[:8]
    losses = []
    for _ in range(6):
        loss = hybrid_loss(model(rgb, depth)["side"], gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_bad_inputs_are_refused(tiny, tmp_path):
    rgb, depth = _inputs()
    with pytest.raises(ValueError, match="depth is"):
        tiny(rgb, torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="rgb must be"):
        tiny(torch.rand(2, 4, 64, 64), depth)
    with pytest.raises(ValueError, match="depth must be"):
        tiny(rgb, None)
    with pytest.raises(ValueError, match="valid sizes"):
        create_model("tiny", img_size=160)  # grid 40, 20, 10, 5: window 4 neither divides 10 nor covers it
    assert 64 in valid_swin_sizes(4) and 160 not in valid_swin_sizes(4)
    with pytest.raises(ValueError, match="stage_fusion must name 4 entries from hosf, hocf, add, rgb, depth"):
        create_model("tiny", stage_fusion="hosf,hosf,cross,hocf")
    with pytest.raises(ValueError, match="order"):
        create_model("tiny", order=0)
    with pytest.raises(ValueError, match="unknown rgb backbone 'vit_giant'; choose from swin_base, swin_tiny, swin_mini"):
        create_model("tiny", rgb_backbone="vit_giant")
    with pytest.raises(ValueError, match="unknown depth backbone 'vgg'; choose from resnet50, resnet18, resnet_mini"):
        create_model("tiny", depth_backbone="vgg")
    with pytest.raises(FileNotFoundError, match="weights"):
        create_model("tiny", depth_weights=str(tmp_path / "absent.safetensors"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        create_model("tiny", depth_weights=str(corrupt))


def test_local_backbone_weights_load_and_mismatched_ones_are_refused(tmp_path):
    from safetensors.torch import save_file

    source = TimmEncoder("resnet_mini", "depth", 1)
    state = {k.replace("body.", "", 1): v.contiguous() for k, v in source.state_dict().items()}
    good = tmp_path / "depth.safetensors"
    save_file(state, str(good))
    model = create_model("tiny", depth_weights=str(good))
    torch.testing.assert_close(model.depth_encoder.body.conv1[0].weight, source.body.conv1[0].weight)
    bad = tmp_path / "bad.safetensors"
    save_file({"conv1.0.weight": torch.zeros(3, 3, 3, 3)}, str(bad))
    with pytest.raises(ValueError, match="bad.safetensors"):
        create_model("tiny", depth_weights=str(bad))


def test_three_channel_weights_into_the_deep_stem_depth_stream_are_summed_over_rgb(tmp_path):
    """ImageNet-style 3-channel weights into the 1-channel depth stream: timm sums the first conv
    over RGB. The deep stem's first conv is ``conv1.0``, not the ``conv1`` of timm's ResNet config."""
    from safetensors.torch import save_file

    source = TimmEncoder("resnet_mini", "depth", 3)
    state = {k.replace("body.", "", 1): v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "rgb.safetensors"))
    model = create_model("tiny", depth_weights=str(tmp_path / "rgb.safetensors"))
    loaded = model.depth_encoder.body
    torch.testing.assert_close(loaded.conv1[0].weight, source.body.conv1[0].weight.sum(1, keepdim=True))
    torch.testing.assert_close(loaded.layer4[0].conv1.weight, source.body.layer4[0].conv1.weight)


class _DepthIsTheMap(torch.nn.Module):
    """A stand-in model whose saliency map is its depth input (for the per-group metrics)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, rgb, depth):
        logits = self.gain * (depth - 0.5)
        return {"logits": logits, "side": [logits]}


def _blobs(n: int, size: int = 16) -> torch.Tensor:
    gt = torch.zeros(n, 1, size, size)
    for i in range(n):
        gt[i, :, 2 + i: 9 + i, 3: 10 + i] = 1
    return gt


def test_test_step_scores_each_kind_and_each_set_separately():
    from torch.utils.data import DataLoader

    from paperzoo.core.lightning import make_trainer
    from paperzoo.hodinet.data import _collate
    from paperzoo.hodinet.module import SODModule

    gt = _blobs(4)
    rgb = torch.rand(4, 3, 16, 16)
    right, wrong = gt, 1 - gt  # the map equals the GT, or its complement
    module = SODModule(_DepthIsTheMap())
    kinds = ["camo", "both", "camo", "both"]
    depth = torch.stack([right[i] if k == "camo" else wrong[i] for i, k in enumerate(kinds)])
    with torch.no_grad():
        module.test_step((rgb, depth, gt, kinds), 0)  # the first batch already holds two kinds
        module.test_step((rgb[:1], right[:1], gt[:1], ["camo"]), 1)
    scores = module.scores()
    assert set(module.group_metrics) == {"camo", "both"}
    assert scores["camo_s"] == pytest.approx(1.0) and scores["camo_mae"] == pytest.approx(0.0, abs=1e-6)
    assert scores["both_s"] < 0.5 and scores["both_mae"] > 0.9
    # file stems (a folder's items) are not groups: they pool into "all"
    stems = SODModule(_DepthIsTheMap())
    with torch.no_grad():
        stems.test_step((rgb[:2], right[:2], gt[:2], ["img.001", "img_2"]), 0)
    assert set(stems.group_metrics) == {"all"}

    def loader(depth):
        items = [(rgb[i], depth[i], gt[i], f"img{i}") for i in range(4)]  # folder items carry stems
        return DataLoader(items, batch_size=2, collate_fn=_collate)

    module = SODModule(_DepthIsTheMap(), test_groups=["NJU2K", "DES"])
    trainer = make_trainer(None, max_epochs=1, device="cpu", logger=False)
    trainer.test(module, dataloaders=[loader(right), loader(wrong)], verbose=False)
    scores = module.scores()
    assert set(module.group_metrics) == {"NJU2K", "DES"}
    assert scores["NJU2K_s"] == pytest.approx(1.0) and scores["DES_s"] < 0.5


class _SideModel(torch.nn.Module):
    """A user model: a 3x3 conv on [rgb; depth], returning ``side`` as ``make_side`` builds it."""

    def __init__(self, make_side) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 1, 3, padding=1)
        self.make_side = make_side

    def forward(self, rgb, depth):
        logits = self.conv(torch.cat([rgb, depth], 1))
        return {"logits": logits, "side": self.make_side(logits)}


def test_model_output_is_checked_before_the_first_step(scenes):
    """A user model's dict: at least one side logit map (B, 1, h, w) of the GT's batch, attached
    to its parameters, and logits (B, 1, h, w); a bad one raises naming the key, not a grad error."""
    from paperzoo.hodinet.module import check_model_output
    from paperzoo.hodinet.pipeline import train_sod

    with pytest.raises(ValueError, match="'side' must be a non-empty list of side logit maps"):
        train_sod(_SideModel(lambda logits: []), scenes, steps=1, batch_size=4)
    gt = scenes.gt[:4]
    logits = torch.zeros(4, 1, 64, 64, requires_grad=True)
    check_model_output({"logits": logits, "side": [logits, logits[..., ::2, ::2]]}, gt)  # any h, w
    bad = {
        "no side": ({"logits": logits}, "no 'side' key"),
        "no logits": ({"side": [logits]}, "no 'logits' key"),
        "a tensor": ({"logits": logits, "side": logits}, "'side' must be a non-empty list"),
        "channels": ({"logits": logits, "side": [logits.expand(4, 2, 64, 64)]}, r"'side\[0\]' is \(4, 2, 64, 64\)"),
        "batch": ({"logits": logits[:2], "side": [logits]}, r"'logits' is \(2, 1, 64, 64\).*B = 4"),
        "too many": ({"logits": logits, "side": [logits] * 5}, "holds 5 maps but there are only 4 side weights"),
        "detached": ({"logits": logits, "side": [logits.detach()]}, "'side' requires grad"),
        "a tensor out": (logits, "must return a dict"),
    }
    for out, message in bad.values():
        with pytest.raises(ValueError, match=message):
            check_model_output(out, gt)
    run = train_sod(_SideModel(lambda logits: [logits]), scenes, steps=1, batch_size=4)
    assert run.steps == 1 and len(run.losses) == 1


def test_training_asks_for_deterministic_kernels_with_a_warning_only(scenes):
    """The side outputs and the decoder upsample bilinearly, whose backward has no
    deterministic CUDA kernel: a strict ``deterministic=True`` would stop every GPU training at
    its first step. ``train_sod`` runs with ``deterministic="warn"`` (the same CPU kernels)."""
    from paperzoo.hodinet.pipeline import train_sod

    torch.use_deterministic_algorithms(False)
    try:
        train_sod(_SideModel(lambda logits: [logits]), scenes, steps=1, batch_size=4)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
