"""The validation experiment: the reduced run of spec section 5 and the validate verb's metrics."""

from __future__ import annotations

import shutil

import pytest

from paperzoo.core import testing
from paperzoo.rsknet.cli import main
from paperzoo.rsknet.model import ARCHS
from paperzoo.rsknet.synth import make_corpus
from paperzoo.rsknet.validation import ValidationConfig, run_validation

REQUIRED = [*(f"{k}_{a}" for a in ARCHS for k in ("eer", "mindcf001", "mindcf005")), "eer_max",
            "eer_rsknet_mtsp_minus_resnet_tstp", "eer_rsknet_mtsp_minus_xvector", "n_target",
            "n_nontarget", "pass_eer_below_25", "pass_noninferior", "params_resnet_tstp_paper",
            "eer_rsknet_mtsp_minus_xvector_ci_low", "eer_rsknet_mtsp_minus_xvector_ci_high",
            "eer_rsknet_mtsp_minus_resnet_tstp_ci_high", "noninferior_ci_high_max",
            "noninferior_resolved"]


def test_validate_verb_writes_every_metric(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", "procedural", 4, 4, 3, 2, seed=5)
    out = tmp_path / "validate"
    assert main(["validate", "--corpus", str(corpus.root), "--epochs", "1", "--batch_size", "8",
                 "--out", str(out)]) == 0
    metrics = testing.check_metrics_json(out, REQUIRED)
    assert (metrics["n_target"], metrics["n_nontarget"]) == (3, 12)
    assert metrics["eer_max"] == max(metrics[f"eer_{a}"] for a in ARCHS)
    for b in ("resnet_tstp", "xvector"):
        assert metrics[f"eer_rsknet_mtsp_minus_{b}_ci_low"] <= metrics[f"eer_rsknet_mtsp_minus_{b}_ci_high"]
    assert metrics["noninferior_resolved"] == int(metrics["noninferior_ci_high_max"] <= 2.0)
    assert (out / "det.png").is_file() and (out / "results.md").is_file()


def test_validation_config_checks():
    with pytest.raises(ValueError, match="resnet_huge"):
        ValidationConfig(models=("resnet_huge",))
    with pytest.raises(ValueError, match="epochs"):
        ValidationConfig(epochs=0)
    with pytest.raises(ValueError, match="bootstrap_resamples"):
        ValidationConfig(bootstrap_resamples=-1)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
@pytest.mark.timeout(3600)
def test_reduced_validation_on_espeak_corpus(tmp_path):
    """Section 5's reduced run: 24 x 12 train, 8 x 8 test (2,016 trials), tiny rsknet_mtsp and
    resnet_tstp: both EER < 25 %, rsknet_mtsp <= resnet_tstp + 5 points."""
    info = make_corpus(tmp_path, "espeak", 24, 12, 8, 8, seed=0)
    config = ValidationConfig(models=("rsknet_mtsp", "resnet_tstp"), epochs=6, noninferiority_points=5.0)
    metrics = run_validation(info.train_root, info.trials, info.test_root, config, seed=0).metrics
    assert (metrics["n_target"], metrics["n_nontarget"]) == (224, 1792)
    assert metrics["eer_rsknet_mtsp"] < 25.0 and metrics["eer_resnet_tstp"] < 25.0, metrics
    assert metrics["eer_rsknet_mtsp_minus_resnet_tstp"] <= 5.0, metrics


def test_validate_rebuilds_an_interrupted_corpus(tmp_path, monkeypatch, capsys):
    """A corpus folder with train/ but no corpus.json (synthesis killed midway) is refused with a
    clear message, and rebuilt with --overwrite; a complete corpus is reused untouched."""
    from paperzoo.rsknet import commands, synth

    real, calls = synth.make_corpus, []

    def small_corpus(out, engine="espeak", *args, seed=0, overwrite=False, **kwargs):
        calls.append(overwrite)
        return real(out, "procedural", 3, 2, 2, 2, seed=seed, overwrite=overwrite)

    monkeypatch.setattr(synth, "make_corpus", small_corpus)
    monkeypatch.setattr(commands, "_run_and_write", lambda out, info, *rest: {"n_target": info.n_target})
    root = tmp_path / "corpus"
    (root / "train" / "spk000").mkdir(parents=True)
    (root / "train" / "spk000" / "u00.wav").write_bytes(b"RIFF")  # the crash left half a corpus
    assert main(["validate", "--corpus", str(root), "--out", str(tmp_path / "a")]) == 2
    assert "interrupted synthesis" in capsys.readouterr().err and calls == []
    # a --corpus outside --out is never deleted, --overwrite or not (that flag concerns --out)
    assert main(["validate", "--corpus", str(root), "--overwrite", "--out", str(tmp_path / "b")]) == 2
    assert "remove that folder" in capsys.readouterr().err and calls == []
    assert (root / "train" / "spk000" / "u00.wav").is_file()
    inside = tmp_path / "b" / "corpus"
    (inside / "train").mkdir(parents=True)
    assert main(["validate", "--corpus", str(inside), "--overwrite", "--out", str(tmp_path / "b")]) == 0
    assert "rebuilding the corpus" in capsys.readouterr().out and calls == [True]
    assert (inside / "corpus.json").is_file() and (inside / "test" / "trials.txt").is_file()
    assert main(["validate", "--corpus", str(inside), "--out", str(tmp_path / "c")]) == 0
    assert "reusing the corpus" in capsys.readouterr().out and calls == [True]
    # the default corpus under --out: the rerun needs --overwrite for --out anyway, and that rebuilds it
    out = tmp_path / "v"
    (out / "corpus" / "test").mkdir(parents=True)
    assert main(["validate", "--out", str(out)]) == 2
    assert main(["validate", "--overwrite", "--out", str(out)]) == 0
    assert (out / "corpus" / "corpus.json").is_file() and calls == [True, True]
