"""The model registry: every preset's shapes and gradients, parameter criteria, checkpoints."""

from __future__ import annotations

import pytest
import torch

from paperzoo.core.testing import check_checkpoint_roundtrip, check_finite_gradients
from paperzoo.rsknet.compress import count_params, macs
from paperzoo.rsknet.model import create_model, list_models
from paperzoo.rsknet.validation import parameter_counts, parameter_criteria

TINY = [n for n in list_models() if n.endswith("_tiny")]


def test_registry_lists_every_arch_in_both_presets():
    archs = ("rsknet_mtsp", "rsknet_mtsp_l", "resnet_tstp", "xvector", "rsknet_tstp", "resnet_mtsp")
    assert set(list_models()) == {f"{a}_{p}" for a in archs for p in ("tiny", "paper")}
    with pytest.raises(ValueError, match="rsknet_mtsp_tiny"):
        create_model("rsknet_huge")
    with pytest.raises(ValueError, match="takes no"):
        create_model("rsknet_mtsp_tiny", width=3)


def test_overrides_beat_the_preset():
    model = create_model("rsknet_mtsp_tiny", emb_dim=32, pool_stages=(2, 3))
    assert model.emb_dim == 32 and model.pool.stages == (2, 3)


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(3, model.feat_dim, model.min_frames + 5)
    assert model(x).shape == (3, model.emb_dim)
    check_finite_gradients(model, x)
    model.eval()
    assert model(torch.randn(1, model.feat_dim, model.min_frames)).shape == (1, model.emb_dim)


def test_input_checks_name_the_problem():
    model = create_model("rsknet_mtsp_tiny").eval()
    with pytest.raises(ValueError, match="rank 2"):
        model(torch.randn(40, 100))
    with pytest.raises(ValueError, match="feat_dim=40"):
        model(torch.randn(1, 80, 100))
    with pytest.raises(ValueError, match="min_frames"):
        model(torch.randn(1, 40, model.min_frames - 1))
    with pytest.raises(ValueError, match="out of range"):
        create_model("rsknet_mtsp_tiny", pool_stages=(4,))
    with pytest.raises(ValueError, match="does not shrink"):
        create_model("rsknet_mtsp_l_tiny", fc_rank=63)


def test_paper_parameter_counts_meet_section_5():
    counts = parameter_counts()
    assert counts["params_resnet_tstp_paper"] == pytest.approx(6.63e6, rel=0.005)
    assert counts["params_resnet_mtsp_paper"] == pytest.approx(9.26e6, rel=0.005)
    assert counts["params_rsknet_tstp_paper"] == pytest.approx(9.65e6, rel=0.005)
    assert counts["params_rsknet_mtsp_paper"] == pytest.approx(12.27e6, rel=0.005)
    assert 4.2e6 <= counts["params_xvector_paper"] <= 4.6e6
    criteria = parameter_criteria(counts)
    assert criteria["pass_resnet_tstp_paper_6_63m"] and criteria["pass_light_17_39_below_baseline"]
    assert criteria["pass_light_tiny_smaller"]
    tiny = counts["params_rsknet_mtsp_tiny"]
    assert abs(counts["params_resnet_tstp_tiny"] / tiny - 1) <= 0.10


def test_fc_rank_shrinks_the_light_model():
    dense, low = create_model("rsknet_mtsp_l_tiny"), create_model("rsknet_mtsp_l_tiny", fc_rank=16)
    d = dense.head.fc.in_features
    assert count_params(dense) - count_params(low) == d * 64 - 16 * (d + 64)


def test_macs_counts_the_convolutions():
    model = create_model("xvector_tiny")
    frames = 100
    expected = 40 * 128 * 5 * 96 + 128 * 128 * 3 * 92 + 128 * 128 * 3 * 86 + 128 * 128 * 86 + 128 * 192 * 86 + 384 * 64
    assert macs(model, torch.zeros(1, 40, frames)) == expected


def test_checkpoint_roundtrip(tmp_path):
    check_checkpoint_roundtrip(create_model("rsknet_mtsp_l_tiny"), tmp_path)


def test_speaker_checkpoint_rebuilds_and_refuses_corrupt_files(tmp_path):
    from paperzoo.rsknet.pipeline import load_speaker_model, save_speaker_model

    model = create_model("resnet_tstp_tiny", emb_dim=32).eval()
    path = save_speaker_model(model, tmp_path / "m.safetensors", "resnet_tstp_tiny", {"emb_dim": 32})
    loaded, meta = load_speaker_model(path)
    x = torch.randn(1, 40, 80)
    torch.testing.assert_close(loaded(x), model(x))
    assert meta["model"] == "resnet_tstp_tiny"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="m.safetensors"):
        load_speaker_model(path)


def test_checkpoint_records_trained_or_svd_factors(tmp_path, write_wav):
    """Spec section 2: outputs say whether low-rank factors were trained or SVD-compressed; an
    SVD-compressed checkpoint rebuilds with those layers factorised (and embed flags it)."""
    import json

    from paperzoo.core.checkpoint import read_meta
    from paperzoo.rsknet.cli import main
    from paperzoo.rsknet.compress import lowrank_from_dense, lowrank_sources
    from paperzoo.rsknet.pipeline import load_speaker_model, save_speaker_model

    torch.manual_seed(0)
    light = create_model("rsknet_mtsp_l_tiny").eval()
    meta = read_meta(save_speaker_model(light, tmp_path / "l.safetensors", "rsknet_mtsp_l_tiny"))
    assert meta["factors_from"] == "trained" and meta["svd_layers"] == {}
    plain = save_speaker_model(create_model("resnet_tstp_tiny"), tmp_path / "p.safetensors", "resnet_tstp_tiny")
    assert read_meta(plain)["factors_from"] == "none"
    light.head.fc = lowrank_from_dense(light.head.fc, rank=16)  # compress the dense embedding layer
    path = save_speaker_model(light, tmp_path / "c.safetensors", "rsknet_mtsp_l_tiny")
    loaded, meta = load_speaker_model(path)
    assert meta["factors_from"] == "mixed" and meta["svd_layers"] == {"head.fc": 16}
    sources = lowrank_sources(loaded)
    assert sources.pop("head.fc") == "svd" and sources and set(sources.values()) == {"trained"}
    x = torch.randn(1, 40, 80)
    torch.testing.assert_close(loaded(x), light(x))
    write_wav(tmp_path / "audio" / "spk" / "a.wav", seconds=1.0)
    assert main(["embed", "--ckpt", str(path), "--root", str(tmp_path / "audio"),
                 "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["svd_compressed"] == 1
    sidecar = json.loads((tmp_path / "c.safetensors.json").read_text())
    sidecar["meta"]["svd_layers"] = {"head.nowhere": 4}
    (tmp_path / "c.safetensors.json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="c.safetensors.*head.nowhere"):
        load_speaker_model(path)
