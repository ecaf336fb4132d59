"""A user's own audio files, folders and lists: unusual but legitimate inputs are read correctly,
malformed ones are refused naming the file before any work is spent."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from paperzoo.rsknet.data import (
    VerificationDataModule,
    compute_features,
    read_audio,
    read_trials,
    read_wav_scp,
    scan_utterances,
)
from paperzoo.rsknet.pipeline import extract_embeddings


def _noise(n=16000, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype("float32")


@pytest.mark.parametrize(("name", "subtype", "tol"), [
    ("u8.wav", "PCM_U8", 2 ** -7), ("s16.wav", "PCM_16", 2 ** -15), ("s24.WAV", "PCM_24", 2 ** -23),
    ("s32.wav", "PCM_32", 2 ** -23), ("f32.wav", "FLOAT", 0), ("f64.wav", "DOUBLE", 0),
    ("a.FLAC", "PCM_16", 2 ** -15), ("a24.flac", "PCM_24", 2 ** -23),
])
def test_integer_and_float_files_read_on_one_scale(tmp_path, name, subtype, tol):
    x = _noise()
    sf.write(str(tmp_path / name), x, 16000, subtype=subtype)
    np.testing.assert_allclose(read_audio(tmp_path / name).numpy(), x, atol=tol, rtol=0)


@pytest.mark.parametrize(("samples", "message"), [
    (np.where(np.arange(16000) == 7, np.nan, _noise()), "1 NaN or infinite"),
    (np.where(np.arange(16000) % 2 == 0, np.inf, _noise()), "8000 NaN or infinite"),
    (np.zeros(16000), "digital silence"),
])
def test_nan_inf_and_silent_files_are_refused(tmp_path, samples, message):
    path = tmp_path / "bad.wav"
    sf.write(str(path), samples.astype("float32"), 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=f"bad.wav .*{message}"):
        read_audio(path)


def test_hidden_files_and_folders_are_not_speakers_or_utterances(tmp_path):
    for spk in ("idA", "idB"):
        sf.write(str((tmp_path / spk).mkdir() or tmp_path / spk / "u0.wav"), _noise(), 16000)
    (tmp_path / "idA" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "idA" / "._u0.wav").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")  # resource fork
    for hidden in (tmp_path / ".ipynb_checkpoints", tmp_path / "idB" / ".trash"):
        hidden.mkdir()
        sf.write(str(hidden / "x.wav"), _noise(), 16000)
    assert [u.utt_id for u in scan_utterances(tmp_path)] == ["idA/u0.wav", "idB/u0.wav"]


def test_macosx_archive_folders_are_not_speakers_or_utterances(tmp_path):
    """A zip made on macOS adds ``__MACOSX/`` beside the speakers (mirroring them with ``._*``
    twins) and may leave one inside a speaker folder."""
    for spk in ("idA", "idB"):
        sf.write(str((tmp_path / spk).mkdir() or tmp_path / spk / "u0.wav"), _noise(), 16000)
    (tmp_path / "__MACOSX" / "idA").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "idA" / "._u0.wav").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    (tmp_path / "idB" / "__MACOSX").mkdir()
    sf.write(str(tmp_path / "idB" / "__MACOSX" / "u1.wav"), _noise(seed=1), 16000)
    assert [(u.speaker, u.utt_id) for u in scan_utterances(tmp_path)] == [
        ("idA", "idA/u0.wav"), ("idB", "idB/u0.wav")]


def test_trial_list_with_bom_and_crlf_and_unicode_names(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("\ufeff1 spk/ä.wav spk/语.wav\r\n0 spk/ä.wav b/c.wav\r\n", encoding="utf-8")
    trials = read_trials(path)
    assert trials.labels.tolist() == [1, 0] and trials.enroll == ["spk/ä.wav", "spk/ä.wav"]
    assert trials.test == ["spk/语.wav", "b/c.wav"]


@pytest.mark.parametrize("reader", [read_trials, read_wav_scp])
def test_lists_that_are_not_utf8_are_refused(tmp_path, reader):
    path = tmp_path / "list.txt"
    path.write_bytes("1 a b\n0 a c\n".encode("utf-16"))
    with pytest.raises(ValueError, match=r"list.txt is not UTF-8 text \(.* at byte 0: b'\\xff'\)"):
        reader(path)


@pytest.mark.parametrize(("reader", "what"), [(read_trials, "trial list"), (read_wav_scp, "wav.scp")])
def test_a_missing_list_is_named_with_its_role(tmp_path, reader, what):
    with pytest.raises(FileNotFoundError, match=f"{what} not found: .*none.txt"):
        reader(tmp_path / "none.txt")


@pytest.mark.parametrize(("content", "message"), [
    (b'{"root": "x",', "corpus.json is not valid JSON: .* at line 1, column 14"),
    (b"\xff\xfe{}", "corpus.json is not UTF-8 text"),
    (b"[1, 2]", "corpus.json holds a JSON list, not an object"),
    (b'{"root": "x", "engine": "espeak", "speed": 1}', "corpus.json lacks seed, .*; has unknown field"),
])
def test_a_damaged_corpus_description_is_refused_naming_it(tmp_path, content, message):
    from paperzoo.rsknet.synth import read_corpus_info

    (tmp_path / "corpus.json").write_bytes(content)
    with pytest.raises(ValueError, match=f"corpus description .*{message}"):
        read_corpus_info(tmp_path)


def test_a_corpus_description_with_a_byte_order_mark_is_read(tmp_path):
    from paperzoo.rsknet.synth import read_corpus_info

    fields = {"root": str(tmp_path), "engine": "procedural", "seed": 3, "sample_rate": 16000,
              "train_speakers": ["a"], "test_speakers": ["b"], "n_target": 1, "n_nontarget": 2}
    (tmp_path / "corpus.json").write_text("\ufeff" + json.dumps(fields), encoding="utf-8")
    assert read_corpus_info(tmp_path).seed == 3


def test_wav_scp_commands_are_refused(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("u1 a.wav\nu2 sox b.wav -t wav - |\n")
    with pytest.raises(ValueError, match="wav.scp:2: 'u2' is a command"):
        read_wav_scp(scp)


class _TinyModel(nn.Module):
    emb_dim, feat_dim, min_frames = 4, 24, 8

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(24, 4)

    def forward(self, x):
        return self.proj(x.mean(-1))


@pytest.mark.parametrize(("make_bad", "message"), [
    (lambda p: None, "audio file not found: .*last.wav"),
    (lambda p: sf.write(str(p), np.stack([_noise()] * 2, 1), 16000), "last.wav has 2 channels"),
    (lambda p: sf.write(str(p), _noise(8000), 8000), "last.wav is sampled at 8000 Hz"),
    (lambda p: p.write_bytes(b""), "cannot read audio file .*last.wav"),
])
def test_every_header_is_checked_before_the_first_file_is_decoded(tmp_path, monkeypatch, make_bad,
                                                                  message):
    import paperzoo.rsknet.data as data
    import paperzoo.rsknet.pipeline as pipeline

    files = {}
    for k in range(3):
        files[f"u{k}"] = tmp_path / f"u{k}.wav"
        sf.write(str(files[f"u{k}"]), _noise(seed=k), 16000)
    files["last"] = tmp_path / "last.wav"
    make_bad(files["last"])
    decoded = []

    def counting_read_audio(path, *args):
        decoded.append(path)
        return read_audio(path, *args)

    monkeypatch.setattr(data, "read_audio", counting_read_audio)
    monkeypatch.setattr(pipeline, "read_audio", counting_read_audio)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        extract_embeddings(_TinyModel(), files)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        compute_features(list(files.values()), 24)
    assert decoded == []


def test_a_clip_shorter_than_one_frame(tmp_path):
    short = tmp_path / "short.wav"
    sf.write(str(short), _noise(100), 16000)
    with pytest.raises(ValueError, match="short.wav gives 0 frames, fewer than the model's min_frames"):
        extract_embeddings(_TinyModel(), {"s": short})
    assert compute_features([short], 24)[0].shape == (24, 0)
    # in training it is left out like any utterance shorter than the crop
    for spk in ("s1", "s2"):
        for j in range(2):
            sf.write(str((tmp_path / spk).mkdir(exist_ok=True) or tmp_path / spk / f"u{j}.wav"),
                     _noise(seed=j), 16000)
    short.rename(tmp_path / "s1" / "short.wav")
    datamodule = VerificationDataModule(tmp_path, crop_s=0.5, batch_size=2, n_mels=24)
    datamodule.setup()
    assert datamodule._train.dropped == 1 and len(datamodule._train) == 4
    assert torch.isfinite(next(iter(datamodule.train_dataloader()))[0]).all()


def test_each_file_is_opened_once_for_its_header_and_once_to_decode(tmp_path, monkeypatch):
    """``check_audio_files`` reads every header up front; ``read_audio`` then checks the header of
    the handle it decodes from instead of opening the file a third time."""
    opened = Counter()
    open_soundfile = sf.SoundFile.__init__

    def counting_open(self, file, *args, **kwargs):
        opened[str(file)] += 1
        open_soundfile(self, file, *args, **kwargs)

    files = {f"u{k}": tmp_path / f"u{k}.wav" for k in range(3)}
    for k, path in enumerate(files.values()):
        sf.write(str(path), _noise(seed=k), 16000)
    monkeypatch.setattr(sf.SoundFile, "__init__", counting_open)
    compute_features(list(files.values()), 24)
    assert opened == {str(path): 2 for path in files.values()}
    opened.clear()
    extract_embeddings(_TinyModel(), files)
    assert opened == {str(path): 2 for path in files.values()}


@pytest.mark.parametrize(("verb", "samples", "message"), [
    ("train", np.where(np.arange(16000) == 7, np.nan, _noise()), "holds 1 NaN or infinite"),
    ("embed", np.zeros(16000), "is digital silence"),
])
def test_nan_and_silent_files_stop_train_and_embed_before_any_result_is_written(
        tmp_path, verb, samples, message):
    """NaN and all-zero samples are seen only by decoding; every file is decoded (features) before
    the first training step or embedding, so the error names the file and ``--out`` stays empty."""
    from paperzoo.rsknet import commands
    from paperzoo.rsknet.model import create_model
    from paperzoo.rsknet.pipeline import save_speaker_model

    data = tmp_path / "data"
    for s in range(3):
        for u in range(2):
            (data / f"s{s}").mkdir(parents=True, exist_ok=True)
            sf.write(str(data / f"s{s}" / f"u{u}.wav"), _noise(seed=2 * s + u), 16000)
    bad = data / "s1" / "u1.wav"
    sf.write(str(bad), samples.astype("float32"), 16000, subtype="FLOAT")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"{bad} {message}"):
        if verb == "train":
            commands.train(out, str(data), model="xvector_tiny", epochs=1, crop_s=0.5, batch_size=2)
        else:
            ckpt = save_speaker_model(create_model("xvector_tiny"), tmp_path / "m.safetensors",
                                      "xvector_tiny")
            commands.embed(out, str(ckpt), root=str(data))
    assert not out.exists() or not any(out.iterdir())
