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


def test_train_embed_score_end_to_end(tmp_path, capsys):
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
    # bad input through the CLI: one line naming the problem, exit 2
    capsys.readouterr()
    assert main(["score", "--trials", str(corpus.trials), "--emb", str(emb / "embeddings.npz"),
                 "--norm", "asnorm", "--cohort", str(cohort / "embeddings.npz"), "--top_n", "500",
                 "--out", str(tmp_path / "s2")]) == 2
    assert "paperzoo-rsknet score: error: top_n=500 must be between 1 and the cohort size 16" in capsys.readouterr().err
    assert main(["embed", "--ckpt", str(tmp_path / "none.safetensors"), "--root", str(corpus.test_root),
                 "--out", str(tmp_path / "e2")]) == 2
    err = capsys.readouterr().err
    assert f"paperzoo-rsknet embed: error: checkpoint not found: {tmp_path / 'none.safetensors'}" in err
    assert not (tmp_path / "s2").exists() and not (tmp_path / "e2").exists()


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


def test_demo_overwrite_rebuilds_its_corpus(tmp_path, monkeypatch):
    """``demo --overwrite`` into an --out that holds a demo run rebuilds <out>/corpus (the corpus
    is shrunk and training skipped here: only the corpus handling is under test)."""
    from paperzoo.rsknet import commands, synth

    real = synth.make_corpus

    def small(out, engine, train_speakers, train_utts, test_speakers, test_utts, seed=0, **kwargs):
        return real(out, engine, 2, 2, 2, 2, seed=seed, **kwargs)

    monkeypatch.setattr(synth, "make_corpus", small)
    monkeypatch.setattr(commands, "_run_and_write", lambda out, info, *args: {"n_target": info.n_target})
    out = tmp_path / "demo"
    assert main(["demo", "--engine", "procedural", "--out", str(out)]) == 0
    assert main(["demo", "--engine", "procedural", "--out", str(out)]) == 2  # refused without --overwrite
    assert main(["demo", "--engine", "procedural", "--seed", "5", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "corpus" / "corpus.json").read_text())["seed"] == 5


def test_espeak_timeout_is_a_clear_error(tmp_path, monkeypatch):
    """Every espeak-ng call has a timeout; running past it names the utterance, text and limit."""
    import subprocess

    from paperzoo.rsknet import synth

    data = tmp_path / "espeak-ng-data"
    (data / "voices" / "en").mkdir(parents=True)
    timeouts = []

    def hanging_synthesis(command, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        if command[1] == "--version":
            return subprocess.CompletedProcess(command, 0, stdout=f"eSpeak NG 1.51  Data at: {data}\n", stderr="")
        raise subprocess.TimeoutExpired(command, kwargs.get("timeout"))

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(subprocess, "run", hanging_synthesis)
    with pytest.raises(TimeoutError, match=r"within 60 s .* synthesising train/spk000/u00.wav .*text '"):
        make_corpus(tmp_path / "c", "espeak", 2, 2, 2, 2)
    assert timeouts == [synth.ESPEAK_TIMEOUT_S] * 2

    def hanging(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs.get("timeout"))

    monkeypatch.setattr(subprocess, "run", hanging)
    with pytest.raises(TimeoutError, match="espeak-ng --version did not finish within 60 s"):
        synth._espeak_data_dir()


def _write_embeddings(path, ids, dim, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, ids=np.array(ids), embeddings=rng.standard_normal((len(ids), dim)).astype(np.float32))
    return path


def test_score_refuses_a_cohort_of_another_dimension(tmp_path, capsys):
    trials = tmp_path / "trials.txt"
    trials.write_text("1 s1/a.wav s1/b.wav\n0 s1/a.wav s2/c.wav\n0 s1/b.wav s2/c.wav\n")
    emb = _write_embeddings(tmp_path / "emb.npz", ["s1/a.wav", "s1/b.wav", "s2/c.wav"], 8)
    cohort = _write_embeddings(tmp_path / "cohort.npz", [f"c{k}" for k in range(5)], 6, seed=1)
    for norm in ("snorm", "asnorm"):
        assert main(["score", "--trials", str(trials), "--emb", str(emb), "--norm", norm,
                     "--cohort", str(cohort), "--top_n", "3", "--out", str(tmp_path / norm)]) == 2
        error = capsys.readouterr().err
        assert f"--cohort {cohort} holds 6-dimensional" in error and f"--emb {emb} 8-dimensional" in error
    same = _write_embeddings(tmp_path / "cohort8.npz", [f"c{k}" for k in range(5)], 8, seed=1)
    assert main(["score", "--trials", str(trials), "--emb", str(emb), "--norm", "asnorm",
                 "--cohort", str(same), "--top_n", "3", "--out", str(tmp_path / "ok")]) == 0


def test_read_embeddings_refuses_npy_and_archives_without_the_arrays(tmp_path):
    from paperzoo.rsknet.pipeline import read_embeddings

    npy = tmp_path / "embeddings.npy"
    np.save(npy, np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=rf"embeddings file {re.escape(str(npy))} is not an \.npz archive"):
        read_embeddings(npy)
    other = tmp_path / "other.npz"
    np.savez(other, vectors=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cohort embeddings .*other\.npz lacks array\(s\) \['ids', 'embeddings'\]"):
        read_embeddings(other, what="cohort embeddings")
    with pytest.raises(FileNotFoundError, match="embeddings file not found"):
        read_embeddings(tmp_path / "none.npz")
    ids = ["a", "b"]
    assert set(read_embeddings(_write_embeddings(tmp_path / "ok.npz", ids, 4))) == set(ids)


def test_training_asks_for_deterministic_algorithms_with_warnings(tmp_path, monkeypatch, small_corpus):
    """The trainer gets ``deterministic="warn"``; the process-wide flag it sets is restored."""
    import torch

    from paperzoo.core import lightning
    from paperzoo.rsknet.data import VerificationDataModule
    from paperzoo.rsknet.model import create_model
    from paperzoo.rsknet.pipeline import train_speaker_model

    class Stop(Exception):
        pass

    seen = {}
    real = lightning.make_trainer

    def record(*args, **kwargs):
        real(*args, **kwargs)  # the Trainer sets the process-wide flags
        seen.update(kwargs, during=(torch.are_deterministic_algorithms_enabled(),
                                    torch.is_deterministic_algorithms_warn_only_enabled()))
        raise Stop  # before fitting: only the settings are under test

    monkeypatch.setattr(lightning, "make_trainer", record)
    model = create_model("xvector_tiny")
    datamodule = VerificationDataModule(small_corpus.train_root, batch_size=2, n_mels=model.feat_dim)
    before = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(Stop):
        train_speaker_model(datamodule, model, epochs=1)
    assert seen["deterministic"] == "warn" and seen["during"] == (True, True)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_a_model_whose_feat_dim_differs_from_the_features_is_refused_before_training(small_corpus, tmp_path,
                                                                                     capsys):
    """A user's model with feat_dim=80 on n_mels=40 features: one ValueError naming both, not a
    raw convolution error; and a margin outside [0, pi/2) from the command line."""
    import torch
    from torch import nn

    from paperzoo.rsknet.data import VerificationDataModule
    from paperzoo.rsknet.pipeline import embed_features, extract_embeddings, train_speaker_model

    class Wide(nn.Module):
        emb_dim, feat_dim, min_frames = 16, 80, 10

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(80, 16, 3, padding=1)

        def forward(self, x):
            return self.conv(x).mean(-1)

    datamodule = VerificationDataModule(small_corpus.train_root, crop_s=0.8, batch_size=4, n_mels=40)
    message = "the model takes feat_dim=80 filterbank channels but the datamodule's features have n_mels=40"
    with pytest.raises(ValueError, match=re.escape(message) + ".*n_mels=80"):
        train_speaker_model(datamodule, Wide(), epochs=1)
    assert datamodule._train is None  # refused before any feature was computed

    class Bare(nn.Module):  # no min_frames: named, not an AttributeError later
        emb_dim, feat_dim = 16, 40

    with pytest.raises(ValueError, match=r"the model \(Bare\) must expose min_frames"):
        train_speaker_model(datamodule, Bare(), epochs=1)
    with pytest.raises(ValueError, match=re.escape("feat_dim=80 filterbank channels but an utterance has n_mels=40")):
        embed_features(Wide(), [torch.zeros(40, 50)])
    with pytest.raises(ValueError, match=re.escape("feat_dim=80 filterbank channels but n_mels=40 was asked for")):
        extract_embeddings(Wide(), {}, n_mels=40)
    capsys.readouterr()
    assert main(["train", "--data", str(small_corpus.train_root), "--model", "xvector_tiny", "--epochs", "1",
                 "--crop_s", "0.8", "--batch_size", "4", "--margin", "-0.1", "--out", str(tmp_path / "neg")]) == 2
    assert "error: margin must be in [0, pi/2), got -0.1" in capsys.readouterr().err


def test_embeddings_never_pool_over_padding(small_corpus):
    """Spec: never pooled means over padding. The package never pads: embed_features and the
    validation loader take whole utterances one at a time (training uses equal-length crops and
    leaves shorter utterances out), so an utterance embedded among others of other lengths equals
    it embedded alone."""
    import torch

    from paperzoo.rsknet.data import VerificationDataModule
    from paperzoo.rsknet.model import create_model
    from paperzoo.rsknet.pipeline import embed_features

    torch.manual_seed(0)
    model = create_model("rsknet_mtsp_tiny").eval()
    generator = torch.Generator().manual_seed(0)
    lengths = (150, model.min_frames + 3, 230)
    feats = [torch.randn(40, t, generator=generator) for t in lengths]
    shapes = []
    handle = model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    together = embed_features(model, feats)
    handle.remove()
    assert shapes == [(1, 40, t) for t in lengths]  # one utterance per forward, never padded
    for i, single in enumerate(feats):
        np.testing.assert_array_equal(embed_features(model, [single])[0], together[i])
    # what padding would do: zeros pooled into the statistics change the embedding
    padded = torch.nn.functional.pad(feats[1], (0, 230 - lengths[1]))
    assert not np.allclose(embed_features(model, [padded])[0], together[1], atol=1e-3)
    datamodule = VerificationDataModule(small_corpus.train_root, trials=small_corpus.trials, crop_s=0.8,
                                        batch_size=4, n_mels=40)
    batches = list(datamodule.val_dataloader())
    assert len(batches) == len(datamodule.trials.utterances) > 1
    assert len({int(features.shape[-1]) for features, _ in batches}) > 1  # lengths differ, unpadded
    for position, ((features, index), whole) in enumerate(zip(batches, datamodule._val)):
        assert int(index) == position and features.shape[0] == 1 and torch.equal(features[0], whole)
    crops = [datamodule._train[i][0] for i in range(len(datamodule._train))]
    assert {tuple(c.shape) for c in crops} == {(40, datamodule.crop_frames)}  # equal crops, no padding

