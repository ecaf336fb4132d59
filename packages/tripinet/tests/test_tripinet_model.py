"""Shapes of both presets, gCMDA at gamma = 0, gradients, options checked, checkpoints."""

from __future__ import annotations

import pytest
import torch

from paperzoo.core import testing
from paperzoo.tripinet.model import GCMDA, create_model, list_models


def test_presets_are_registered():
    assert list_models() == ["paper", "tiny"]
    with pytest.raises(ValueError, match="paper, tiny"):
        create_model("huge")


@pytest.mark.parametrize(
    "streams, fusion",
    [
        (("rgb",), "plain"),
        (("rgb", "noise"), "gcmda"),
        (("rgb", "freq"), "gcmda"),
        (("rgb", "noise", "freq"), "plain"),
        (("rgb", "noise", "freq"), "gcmda"),
    ],
)
def test_tiny_shapes(streams, fusion):
    net = create_model("tiny", streams=streams, fusion=fusion)
    out = net(torch.rand(2, 3, 64, 96))
    assert out["mask_logits"].shape == (2, 1, 64, 96)
    assert [s.shape[-2:] for s in out["side_logits"]] == [(8, 12), (4, 6), (2, 3)]
    assert torch.equal(out["image_logit"], out["mask_logits"].amax(dim=(1, 2, 3)))


def test_paper_preset_shapes_at_64_px_without_download():
    net = create_model("paper").eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64))
    assert out["mask_logits"].shape == (1, 1, 64, 64)
    assert net.rgb_encoder.feature_info.channels() == [256, 512, 1024, 2048]


def test_gcmda_at_gamma_zero_ignores_its_attention_projections():
    torch.manual_seed(0)
    block = GCMDA(16, 24, 32, pool_kv=2).eval()
    guide, aux = torch.rand(2, 16, 4, 4), torch.rand(2, 24, 4, 4)
    before = block(guide, aux)
    for layer in (block.query, block.key, block.value):
        torch.nn.init.normal_(layer.weight, std=5.0)
    assert torch.allclose(block(guide, aux), before)
    with torch.no_grad():
        block.gamma_p.fill_(1.0)
    assert not torch.allclose(block(guide, aux), before)


@pytest.mark.parametrize("mode, reverse", [("joint", False), ("pair", True)])
def test_every_parameter_gets_a_finite_gradient(mode, reverse):
    torch.manual_seed(0)
    net = create_model("tiny", gcmda_mode=mode, reverse_guide=reverse)
    with torch.no_grad():  # gammas start at 0: open the attention so its projections get gradients
        for name, p in net.named_parameters():
            if "gamma" in name:
                p.fill_(0.5)

    def loss(out):
        return out["mask_logits"].pow(2).mean() + sum(s.pow(2).mean() for s in out["side_logits"])

    testing.check_finite_gradients(net, torch.rand(2, 3, 64, 64), loss_fn=loss)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"streams": ("noise", "freq")}, "must include rgb"),
        ({"streams": ("rgb", "depth")}, "streams must be"),
        ({"freq": "wavelet"}, "unknown freq"),
        ({"fusion": "sum"}, "unknown fusion"),
        ({"gcmda_stages": (5,)}, "levels 1-4"),
        ({"channels": 4}, "channels must be >= 8"),
        ({"rgb_backbone": "vit_tiny"}, "timm ResNet"),
        ({"width": 3}, "takes no"),
        ({"residual_clip": 0.0}, "residual_clip must be > 0"),
        ({"stem_width": 15}, "stem_width must be an even number"),
    ],
)
def test_bad_options_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        create_model("tiny", **overrides)


def test_noise_residuals_are_truncated_at_residual_clip():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    net = create_model("tiny", streams=("rgb", "noise"), residual_clip=3.0)
    raw = torch.cat([net.srm(x), net.bayar(x)], dim=1)
    assert raw.abs().max() > 3.0  # uniform noise on 0-255 pixels: residuals in the tens
    assert torch.equal(net.noise_residuals(x), raw.clamp(-3.0, 3.0))
    net.residual_clip = None
    assert torch.equal(net.noise_residuals(x), raw)


def test_tiny_preset_keeps_the_resnet_stem():
    net = create_model("tiny")
    assert net.noise_encoder.conv1.kernel_size == (7, 7)
    assert net.noise_encoder.conv1.out_channels == 64


def test_stem_width_narrows_the_resnet_stem_of_every_encoder():
    torch.manual_seed(0)
    net = create_model("tiny", stem_width=16)
    for encoder, in_channels in (
        (net.rgb_encoder, 3),
        (net.noise_encoder, 12),
        (net.freq_encoder, 1),
    ):
        assert isinstance(encoder.conv1, torch.nn.Conv2d)
        assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)
        assert (encoder.conv1.in_channels, encoder.conv1.out_channels) == (in_channels, 16)
        assert encoder.bn1.num_features == 16
    assert net(torch.rand(2, 3, 64, 64))["mask_logits"].shape == (2, 1, 64, 64)


def test_input_shape_is_checked():
    net = create_model("tiny")
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 64))
    with pytest.raises(ValueError, match="RGB"):
        net(torch.rand(1, 1, 64, 64))


def test_checkpoint_round_trip_and_corrupt_file(tmp_path):
    from paperzoo.tripinet.pipeline import load_localizer, save_localizer

    net = create_model("tiny", streams=("rgb", "noise"))
    testing.check_checkpoint_roundtrip(net, tmp_path)
    path = save_localizer(
        net, tmp_path / "model.safetensors", "tiny", {"streams": ("rgb", "noise")}
    )
    loaded, meta = load_localizer(path)
    assert meta["overrides"] == {"streams": ["rgb", "noise"]}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_localizer(path)


def test_rgb_weights_are_checked_and_not_needed_after_training(tmp_path):
    import timm

    from paperzoo.core.checkpoint import read_meta, save_weights
    from paperzoo.tripinet.pipeline import load_localizer, save_localizer

    other = save_weights(timm.create_model("resnet18"), tmp_path / "resnet18.safetensors")
    with pytest.raises(ValueError, match=r"resnet18\.safetensors: key '.+' has shape \(.*expects"):
        create_model("tiny", rgb_weights=str(other))
    unrelated = save_weights(torch.nn.Linear(3, 2), tmp_path / "linear.safetensors")
    with pytest.raises(
        ValueError, match=r"linear\.safetensors: no key matches .*\(2 keys in the file"
    ):
        create_model("tiny", rgb_weights=str(unrelated))
    source = create_model("tiny", streams=("rgb",))
    rgb = save_weights(source.rgb_encoder, tmp_path / "rgb.safetensors")
    net = create_model("tiny", streams=("rgb",), rgb_weights=str(rgb))
    for key, value in source.rgb_encoder.state_dict().items():
        assert torch.equal(net.rgb_encoder.state_dict()[key], value), key
    path = save_localizer(
        net, tmp_path / "model.safetensors", "tiny", {"streams": ("rgb",), "rgb_weights": str(rgb)}
    )
    meta = read_meta(path)
    assert meta["overrides"] == {"streams": ["rgb"]} and meta["rgb_weights_init"] == str(rgb)
    rgb.unlink()  # the checkpoint holds every weight: the pretrained file is not read again
    loaded, _ = load_localizer(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
