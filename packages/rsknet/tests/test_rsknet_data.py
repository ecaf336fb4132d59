"""Audio reading, the three layouts, both trial forms and every bad input of spec section 7."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paperzoo.rsknet.data import (
    VerificationDataModule,
    read_audio,
    read_trials,
    read_wav_scp,
    scan_utterances,
)
from paperzoo.rsknet.features import Fbank


def test_a_torchaudio_built_for_another_torch_is_named_in_an_import_error(monkeypatch):
    import importlib

    def broken(name):  # what torchaudio 2.11.0 raises on torch 2.5
        raise OSError("_torchaudio.abi3.so: undefined symbol: aoti_torch_abi_version")

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError, match=r"torchaudio\.compliance\.kaldi could not be loaded \(torch "
                       r"[^,]+, torchaudio [^)]+\).*same release.*undefined symbol"):
        Fbank()(torch.randn(16000))


def test_fbank_shapes_cmn_and_kaldi_import():
    import torchaudio.compliance.kaldi  # noqa: F401 - the torch/torchaudio pair must load

    wave = torch.randn(2, 16000) * 0.1
    feats = Fbank(n_mels=40)(wave)
    assert feats.shape == (2, 40, Fbank().num_frames(16000)) == (2, 40, 98)
    torch.testing.assert_close(feats.mean(-1), torch.zeros(2, 40), atol=1e-4, rtol=0)
    torch.testing.assert_close(Fbank(40)(wave[0]), feats[:1])
    with pytest.raises(ValueError, match="shorter than one"):
        Fbank()(torch.zeros(100))
    with pytest.raises(ValueError, match="waveforms"):
        Fbank()(torch.zeros(1, 1, 16000))


def test_read_audio_and_its_errors(tmp_path, write_wav):
    good = write_wav(tmp_path / "a.wav")
    assert read_audio(good).shape == (16000,)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError, match="bad.wav"):
        read_audio(bad)
    stereo = write_wav(tmp_path / "st.wav", channels=2)
    with pytest.raises(ValueError, match="2 channels"):
        read_audio(stereo)
    at8k = write_wav(tmp_path / "8k.wav", rate=8000)
    with pytest.raises(ValueError, match="resample=True"):
        read_audio(at8k)
    assert read_audio(at8k, resample=True).shape == (16000,)


def _tree(root, layout, speakers=("idA", "idB"), ext=".wav", write_wav=None):
    paths = []
    for k, spk in enumerate(speakers):
        for j in range(2):
            if layout == "voxceleb1":
                path = root / "wav" / spk / "vid1" / f"0000{j}{ext}"
            elif layout == "voxceleb2":
                path = root / "dev" / "aac" / spk / "vid1" / f"0000{j}{ext}"
            else:
                path = root / spk / f"u{j}{ext}"
            if ext == ".m4a":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            else:
                write_wav(path, seconds=0.8, seed=10 * k + j)
            paths.append(path)
    return paths


@pytest.mark.parametrize("layout", ["voxceleb1", "voxceleb2", "folders"])
def test_layouts(tmp_path, layout, write_wav):
    _tree(tmp_path, layout, write_wav=write_wav)
    utterances = scan_utterances(tmp_path, layout)
    assert [u.speaker for u in utterances] == ["idA", "idA", "idB", "idB"]
    if layout != "folders":
        assert utterances[0].utt_id == "idA/vid1/00000.wav"


def test_layout_errors(tmp_path, write_wav):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_utterances(tmp_path / "nowhere")
    (tmp_path / "empty" / "spk").mkdir(parents=True)
    with pytest.raises(ValueError, match="no .wav"):
        scan_utterances(tmp_path / "empty")
    _tree(tmp_path / "vox2", "voxceleb2", ext=".m4a", write_wav=write_wav)
    with pytest.raises(ValueError, match="ffmpeg"):
        scan_utterances(tmp_path / "vox2", "voxceleb2")
    with pytest.raises(ValueError, match="layout"):
        scan_utterances(tmp_path, "librispeech")


def test_both_trial_forms(tmp_path):
    vox = tmp_path / "vox.txt"
    vox.write_text("1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n")
    kaldi = tmp_path / "kaldi.txt"
    kaldi.write_text("a/1.wav a/2.wav target\na/1.wav b/1.wav nontarget\n")
    for path in (vox, kaldi):
        trials = read_trials(path)
        assert trials.labels.tolist() == [1, 0] and trials.enroll == ["a/1.wav", "a/1.wav"]
        assert trials.utterances == ["a/1.wav", "a/2.wav", "b/1.wav"]


def test_trial_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 a b\n2 a b\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_trials(bad)
    one = tmp_path / "one.txt"
    one.write_text("1 a b\n1 a c\n")
    with pytest.raises(ValueError, match="only target"):
        read_trials(one)
    good = tmp_path / "good.txt"
    good.write_text("1 a/1.wav a/2.wav\n0 a/1.wav b/1.wav\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        read_trials(good, tmp_path)
    with pytest.raises(FileNotFoundError):
        read_trials(tmp_path / "none.txt")


def test_wav_scp_duplicates(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 a.wav\nu2 b.wav\n")
    assert read_wav_scp(scp) == {"u1": tmp_path / "a.wav", "u2": tmp_path / "b.wav"}
    scp.write_text("u1 a.wav\nu1 b.wav\n")
    with pytest.raises(ValueError, match="duplicate"):
        read_wav_scp(scp)


def test_datamodule_crops_and_leak_check(tmp_path, write_wav):
    _tree(tmp_path, "folders", speakers=("s1", "s2", "s3", "s4"), write_wav=write_wav)
    dm = VerificationDataModule(tmp_path, crop_s=0.5, batch_size=2, n_mels=24)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 24, 48) and dm.n_classes == 4
    torch.testing.assert_close(x.mean(-1), torch.zeros(2, 24), atol=1e-4, rtol=0)
    trials = tmp_path / "trials.txt"
    trials.write_text("1 s1/u0.wav s1/u1.wav\n0 s1/u0.wav s2/u0.wav\n")
    with pytest.raises(ValueError, match="also training speakers"):
        VerificationDataModule(tmp_path, trials=trials)
    dm = VerificationDataModule(tmp_path, trials=trials, exclude_trial_speakers=True, batch_size=2)
    assert dm.speakers == ["s3", "s4"]
    with pytest.raises(ValueError, match="crop_s"):
        VerificationDataModule(tmp_path, crop_s=0)
    with pytest.raises(ValueError, match="lower crop_s"):
        VerificationDataModule(tmp_path, crop_s=5.0, batch_size=2).setup()
    assert np.isfinite(x.numpy()).all()


def test_trials_root_defaults_to_the_trial_list_folder(tmp_path, write_wav):
    train, test, elsewhere = tmp_path / "train", tmp_path / "test", tmp_path / "lists"
    _tree(train, "folders", speakers=("s1", "s2"), write_wav=write_wav)
    _tree(test, "folders", speakers=("t1", "t2"), write_wav=write_wav)
    lines = "1 t1/u0.wav t1/u1.wav\n0 t1/u0.wav t2/u0.wav\n"
    (test / "trials.txt").write_text(lines)
    dm = VerificationDataModule(train, trials=test / "trials.txt", batch_size=2)
    assert dm.trials_root == test and dm.speakers == ["s1", "s2"]
    # a list kept elsewhere: named with trials_root, refused (naming both folders) without it
    elsewhere.mkdir()
    (elsewhere / "trials.txt").write_text(lines)
    with pytest.raises(
        FileNotFoundError, match="neither under its own folder .*lists.*trials_root"
    ):
        VerificationDataModule(train, trials=elsewhere / "trials.txt", batch_size=2)
    dm = VerificationDataModule(
        train, trials=elsewhere / "trials.txt", trials_root=test, batch_size=2
    )
    assert dm.trials_root == test
    # VoxCeleb1-O on the training tree itself: the training audio root still serves
    (elsewhere / "vox1o.txt").write_text("1 s1/u0.wav s1/u1.wav\n0 s1/u0.wav s2/u0.wav\n")
    with pytest.raises(ValueError, match="also training speakers"):
        VerificationDataModule(train, trials=elsewhere / "vox1o.txt", batch_size=2)
