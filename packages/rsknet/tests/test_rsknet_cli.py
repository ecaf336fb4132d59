"""The command line end to end (in-process), the corpus engines and the README's Python example."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from paperzoo.core import testing
from paperzoo.rsknet.cli import main
from paperzoo.rsknet.synth import make_corpus

VERBS = ["synth", "train", "embed", "score", "params", "demo", "validate"]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_help_and_print_config(tmp_path):
    testing.check_cli_help(main, VERBS)
    config = testing.check_print_config(main, "train", ["--data", "x", "--trials_root", "t"], tmp_path)
    assert config["trials_root"] == "t"


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return make_corpus(root, "procedural", train_speakers=4, train_utts=3, test_speakers=3,
                       test_utts=2, seed=1)


def test_procedural_corpus_layout(small_corpus):
    from paperzoo.rsknet.data import read_trials, scan_utterances

    assert len(scan_utterances(small_corpus.train_root)) == 12
    trials = read_trials(small_corpus.trials, small_corpus.test_root)
    assert (trials.n_target, trials.n_nontarget) == (3, 12)
    assert not set(small_corpus.train_speakers) & set(small_corpus.test_speakers)
    assert len(set(small_corpus.texts.values())) == len(small_corpus.texts)


def test_synth_refuses_to_overwrite(tmp_path, small_corpus):
    status = main(["synth", "--engine", "procedural", "--train_speakers", "2", "--train_utts", "2",
                   "--test_speakers", "2", "--test_utts", "2", "--out", str(small_corpus.root),
                   "--overwrite"])
    assert status == 0
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_corpus(small_corpus.root, "procedural", 2, 2, 2, 2)
    with pytest.raises(ValueError, match="train_utts"):
        make_corpus(tmp_path / "c", "procedural", 2, 1, 2, 2)


@needs_espeak
def test_espeak_corpus_is_deterministic(tmp_path):
    a = make_corpus(tmp_path / "a", "espeak", 2, 2, 2, 2, seed=3)
    b = make_corpus(tmp_path / "b", "espeak", 2, 2, 2, 2, seed=3)
    wav = "train/spk000/u00.wav"
    assert a.texts == b.texts and a.voices == b.voices
    assert (tmp_path / "a" / wav).read_bytes() == (tmp_path / "b" / wav).read_bytes()
    assert a.voices["spk000"]["base"] in ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")


def test_espeak_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="espeak-ng"):
        make_corpus(tmp_path / "c", "espeak", 2, 2, 2, 2)


def test_train_embed_score_end_to_end(tmp_path):
    corpus = make_corpus(tmp_path / "corpus", "procedural", train_speakers=4, train_utts=4,
                         test_speakers=3, test_utts=2, seed=2)
    run = tmp_path / "train"
    # --trials: the test tree's own list (paths relative to its folder, the default --trials_root)
    assert main(["train", "--data", str(corpus.train_root), "--model", "xvector_tiny", "--epochs", "1",
                 "--batch_size", "8", "--crop_s", "0.8", "--trials", str(corpus.trials),
                 "--out", str(run)]) == 0
    assert (run / "model.safetensors").is_file()
    trained = json.loads((run / "metrics.json").read_text())
    emb = tmp_path / "emb"
    assert main(["embed", "--ckpt", str(run / "model.safetensors"), "--root", str(corpus.test_root),
                 "--out", str(emb)]) == 0
    with np.load(emb / "embeddings.npz", allow_pickle=False) as data:
        assert data["embeddings"].shape == (6, 64) and np.isfinite(data["embeddings"]).all()
    # --audio F (one file, the spec's form) and a list of files
    one = next(iter(sorted(corpus.test_root.rglob("*.wav"))))
    assert main(["embed", "--ckpt", str(run / "model.safetensors"), "--audio", str(one),
                 "--out", str(tmp_path / "one")]) == 0
    with np.load(tmp_path / "one" / "embeddings.npz", allow_pickle=False) as data:
        assert data["embeddings"].shape == (1, 64) and data["ids"].tolist() == [str(one)]
    assert main(["embed", "--ckpt", str(run / "model.safetensors"), "--audio", f"[{one},{one}]",
                 "--out", str(tmp_path / "list")]) == 0
    # the EER measured on --trials after the last epoch is the one score gives the saved model
    plain = tmp_path / "plain"
    assert main(["score", "--trials", str(corpus.trials), "--emb", str(emb / "embeddings.npz"),
                 "--out", str(plain)]) == 0
    scored_eer = json.loads((plain / "metrics.json").read_text())["eer"]
    assert trained["val_eer"] == pytest.approx(scored_eer, abs=1e-6)
    cohort = tmp_path / "cohort"
    assert main(["embed", "--ckpt", str(run / "model.safetensors"), "--root", str(corpus.train_root),
                 "--out", str(cohort)]) == 0
    scored = tmp_path / "score"
    assert main(["score", "--trials", str(corpus.trials), "--emb", str(emb / "embeddings.npz"),
                 "--norm", "asnorm", "--cohort", str(cohort / "embeddings.npz"), "--top_n", "5",
                 "--out", str(scored)]) == 0
    metrics = testing.check_metrics_json(scored, ["eer", "mindcf_001", "mindcf_005", "threshold",
                                                  "n_target", "n_nontarget"])
    assert (metrics["n_target"], metrics["n_nontarget"]) == (3, 12) and 0 <= metrics["eer"] <= 100
    assert (scored / "det.png").stat().st_size > 1000
    assert len((scored / "scores.txt").read_text().splitlines()) == 15
    # bad input through the CLI: one line, exit 2
    assert main(["score", "--trials", str(corpus.trials), "--emb", str(emb / "embeddings.npz"),
                 "--norm", "asnorm", "--cohort", str(cohort / "embeddings.npz"), "--top_n", "500",
                 "--out", str(tmp_path / "s2")]) == 2
    assert main(["embed", "--ckpt", str(tmp_path / "none.safetensors"), "--root", str(corpus.test_root),
                 "--out", str(tmp_path / "e2")]) == 2


def test_params_verb(tmp_path):
    assert main(["params", "--out", str(tmp_path / "p")]) == 0
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert metrics["params_resnet_tstp_paper"] == pytest.approx(6.63e6, rel=0.005)
    assert metrics["macs_rsknet_mtsp_tiny"] > metrics["macs_rsknet_mtsp_l_tiny"]


def _readme_python_block() -> str:
    """The fenced Python block under the README's ``## Python`` heading."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)
    assert len(section) == 2, "README lacks a '## Python' section"
    block = re.search(r"```python\n(.*?)```", section[1].split("\n## ", 1)[0], flags=re.S)
    assert block, "README's Python section lacks a python code block"
    return block.group(1)


def test_readme_python_example(tmp_path, monkeypatch):
    """The README's library example, executed as written (its corpus goes under tmp_path)."""
    import torch

    code = _readme_python_block()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    result, model = namespace["result"], namespace["model"]
    assert (tmp_path / "data" / "tiny" / "corpus.json").is_file()
    assert 0.0 <= result.eer <= 1.0 and set(result.min_dcf) == {0.01, 0.05}
    assert (result.n_target, result.n_nontarget) == (2, 4)
    assert model(torch.randn(1, 40, 100)).shape == (1, 32)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    metrics = testing.check_metrics_json(tmp_path / "demo", ["eer_rsknet_mtsp", "n_target"])
    assert 0 <= metrics["eer_rsknet_mtsp"] <= 100
    assert (tmp_path / "demo" / "det.png").is_file()


def test_a_trial_utterance_too_short_for_the_model_is_refused_before_training(tmp_path):
    from paperzoo.rsknet.data import VerificationDataModule
    from paperzoo.rsknet.model import create_model
    from paperzoo.rsknet.pipeline import train_speaker_model

    corpus = make_corpus(tmp_path / "corpus", "procedural", train_speakers=3, train_utts=2,
                         test_speakers=2, test_utts=2, seed=4)
    model = create_model("xvector_tiny")
    datamodule = VerificationDataModule(corpus.train_root, trials=corpus.trials, batch_size=2,
                                        n_mels=model.feat_dim)
    model.min_frames = 10**6  # no trial utterance is that long
    with pytest.raises(ValueError, match="trial utterance .* fewer than the model's min_frames"):
        train_speaker_model(datamodule, model, epochs=1)
