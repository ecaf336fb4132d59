"""Audio, dataset layouts and trial lists (section 4), and the training datamodule.

Layouts (``layout=``):

- ``"voxceleb1"``: ``<root>/wav/<id1xxxx>/<video>/<nnnnn>.wav`` (or ``<root>`` is the ``wav``
  folder); utterance ids are paths relative to the ``wav`` folder, as in the trial lists.
- ``"voxceleb2"``: ``<root>/dev/aac/<id0xxxx>/<video>/<nnnnn>.wav``, converted from ``.m4a``
  beforehand (the README gives the ffmpeg command; an ``.m4a``-only tree is refused).
- ``"folders"``: ``<root>/<speaker>/**/*.{wav,flac}`` (the synthetic corpus uses it).

Trial lists are auto-detected per line: ``<1|0> <enroll> <test>`` (VoxCeleb1-O/E/H) or Kaldi's
``<enroll> <test> target|nontarget``; paths are relative to the trial root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch

from paperzoo.core.data import is_hidden, read_text

LAYOUTS = ("voxceleb1", "voxceleb2", "folders")
AUDIO_EXTS = (".wav", ".flac")


def _check_header(header, path: Path, sample_rate: int, resample: bool) -> None:
    """Refuses a multi-channel file, or one at another rate without ``resample``; ``header`` is a
    soundfile ``info`` or an open ``SoundFile``."""
    if header.channels != 1:
        raise ValueError(f"{path} has {header.channels} channels; speaker models take mono audio "
                         "(mix or pick one channel first)")
    if header.samplerate != sample_rate and not resample:
        raise ValueError(f"{path} is sampled at {header.samplerate} Hz, expected {sample_rate} Hz; "
                         "pass resample=True (CLI --resample true) to convert it")


def _audio_info(path: Path, sample_rate: int, resample: bool):
    """The header of an audio file (soundfile), refused when missing, unreadable, multi-channel
    or at another rate without ``resample``."""
    import soundfile as sf

    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as error:
        raise ValueError(f"cannot read audio file {path}: {error}") from error
    _check_header(info, path, sample_rate, resample)
    return info


def check_audio_files(paths, sample_rate: int = 16000, resample: bool = False) -> None:
    """Read every file's header before any feature is computed, so that a missing, unreadable,
    multi-channel or wrong-rate file is refused (naming it) before work is spent on the others."""
    for path in paths:
        _audio_info(Path(path), sample_rate, resample)


def read_audio(path: str | Path, sample_rate: int = 16000, resample: bool = False) -> torch.Tensor:
    """A mono file as a float32 tensor ``(N,)``, read with soundfile.

    Integer files (8/16/24/32-bit WAV, FLAC) are scaled to [-1, 1]; float files are read as stored
    (the per-utterance mean removal of the features makes the level irrelevant). A file at another
    rate is refused unless ``resample=True`` (torchaudio's resampler then converts it);
    multi-channel files, files with NaN or infinite samples and files of digital silence (every
    sample 0: all such files would get one embedding) are refused, naming the file. The header
    is checked on the handle the samples are read from (the file is opened once).
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with sf.SoundFile(str(path)) as handle:
            _check_header(handle, path, sample_rate, resample)
            audio, rate = handle.read(dtype="float32", always_2d=True), handle.samplerate
    except (RuntimeError, sf.LibsndfileError) as error:
        raise ValueError(f"cannot read audio file {path}: {error}") from error
    wave = torch.from_numpy(np.ascontiguousarray(audio[:, 0]))
    if wave.numel() == 0:
        raise ValueError(f"{path} holds no samples")
    if not torch.isfinite(wave).all():
        bad = int((~torch.isfinite(wave)).sum())
        raise ValueError(f"{path} holds {bad} NaN or infinite sample(s); repair or remove the file")
    if not wave.any():
        raise ValueError(f"{path} is digital silence (every sample is 0); remove it: it carries no "
                         "speaker information")
    if rate != sample_rate:
        from paperzoo.rsknet.features import import_torchaudio

        AF = import_torchaudio("torchaudio.functional")
        wave = AF.resample(wave, rate, sample_rate)
    return wave


@dataclass(frozen=True)
class Utterance:
    """One audio file of a dataset: id (path relative to the layout's audio root), speaker, path."""

    utt_id: str
    speaker: str
    path: Path


def _audio_root(root: Path, layout: str) -> Path:
    if layout == "voxceleb1":
        return root / "wav" if (root / "wav").is_dir() else root
    if layout == "voxceleb2":
        for sub in ("dev/aac", "dev/wav", "aac", "wav"):
            if (root / sub).is_dir():
                return root / sub
        return root
    return root


def scan_utterances(root: str | Path, layout: str = "folders") -> list[Utterance]:
    """Every utterance of a dataset tree, sorted by id; speakers are the first folder level.

    Extensions match in any case (``.WAV``, ``.Flac``); hidden files and folders (names starting
    with ``.``, ``__MACOSX``: :func:`paperzoo.core.data.is_hidden`) are skipped."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")
    audio_root = _audio_root(root, layout)
    speakers = sorted(p for p in audio_root.iterdir() if p.is_dir() and not is_hidden(p))
    if not speakers:
        raise ValueError(f"{audio_root} holds no speaker folders (layout {layout!r})")
    utterances = []
    for folder in speakers:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTS and p.is_file()
                       and not is_hidden(p, root=folder))
        if not files:
            if any(not is_hidden(p, root=folder) for p in folder.rglob("*.m4a")):
                raise ValueError(
                    f"{folder} holds only .m4a files; convert them to 16 kHz .wav first, e.g. "
                    "`find ROOT -name '*.m4a' -exec sh -c 'ffmpeg -v error -i \"$0\" -ac 1 -ar 16000 "
                    "\"${0%.m4a}.wav\"' {} \\;` (needs ffmpeg)")
            raise ValueError(f"speaker folder {folder} holds no .wav or .flac files")
        utterances += [Utterance(p.relative_to(audio_root).as_posix(), folder.name, p) for p in files]
    return utterances


@dataclass(frozen=True)
class Trials:
    """A trial list: labels (1 target, 0 nontarget) and enroll/test utterance ids."""

    labels: np.ndarray
    enroll: list[str]
    test: list[str]
    path: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_target(self) -> int:
        return int(self.labels.sum())

    @property
    def n_nontarget(self) -> int:
        return int(len(self.labels) - self.labels.sum())

    @property
    def utterances(self) -> list[str]:
        return sorted(set(self.enroll) | set(self.test))


def read_trials(path: str | Path, root: str | Path | None = None) -> Trials:
    """Read ``<1|0> <enroll> <test>`` or ``<enroll> <test> target|nontarget`` lines.

    With ``root``, every named file must exist under it. One-class lists are refused.
    """
    path = Path(path)
    labels, enroll, test = [], [], []
    for number, line in enumerate(read_text(path, "trial list").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 3 and fields[0] in ("0", "1"):
            label, a, b = int(fields[0]), fields[1], fields[2]
        elif len(fields) == 3 and fields[2] in ("target", "nontarget"):
            label, a, b = int(fields[2] == "target"), fields[0], fields[1]
        else:
            raise ValueError(f"{path}:{number}: malformed trial line {line.strip()!r}; expected "
                             "'<1|0> <enroll> <test>' or '<enroll> <test> target|nontarget'")
        labels.append(label)
        enroll.append(a)
        test.append(b)
    if not labels:
        raise ValueError(f"{path} holds no trials")
    labels_array = np.asarray(labels, dtype=np.int64)
    if labels_array.min() == labels_array.max():
        kind = "target" if labels_array[0] else "nontarget"
        raise ValueError(f"{path} holds only {kind} trials; EER and minDCF need both kinds")
    trials = Trials(labels_array, enroll, test, str(path))
    if root is not None:
        root = Path(root)
        missing = [u for u in trials.utterances if not (root / u).is_file()]
        if missing:
            raise FileNotFoundError(f"{path} names {len(missing)} file(s) missing under {root}, "
                                    f"e.g. {missing[0]}")
    return trials


def read_wav_scp(path: str | Path) -> dict[str, Path]:
    """Kaldi ``wav.scp``: ``<utt-id> <path>`` per line; duplicate ids and command entries
    (``... |``) are refused."""
    path = Path(path)
    entries: dict[str, Path] = {}
    for number, line in enumerate(read_text(path, "wav.scp").splitlines(), start=1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected '<utt-id> <path>', got {line.strip()!r}")
        if fields[0] in entries:
            raise ValueError(f"{path}:{number}: duplicate utterance id {fields[0]!r}")
        if fields[1].rstrip().endswith("|"):
            raise ValueError(f"{path}:{number}: {fields[0]!r} is a command ({fields[1].strip()!r}); "
                             "commands are not run: write the audio to files and list their paths")
        file = Path(fields[1].strip())
        entries[fields[0]] = file if file.is_absolute() else path.parent / file
    return entries


def trial_speaker(utt_id: str) -> str:
    return utt_id.split("/", 1)[0]


class CropDataset(torch.utils.data.Dataset):
    """Random fixed-length crops of log-mel features with speaker labels (training, section 5).

    Features of whole utterances are computed once (no CMN); each crop gets its own mean
    removed. Utterances shorter than the crop are left out (never padded).
    """

    def __init__(self, features: list[torch.Tensor], labels: list[int], crop_frames: int, seed: int = 0) -> None:
        keep = [i for i, f in enumerate(features) if f.shape[-1] >= crop_frames]
        if not keep:
            raise ValueError(f"no utterance is at least {crop_frames} frames long; lower crop_s")
        self.features = [features[i] for i in keep]
        self.labels = [labels[i] for i in keep]
        self.dropped = len(features) - len(keep)
        self.crop_frames = crop_frames
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        feats = self.features[index]
        start = int(torch.randint(0, feats.shape[-1] - self.crop_frames + 1, (1,), generator=self.generator))
        crop = feats[:, start:start + self.crop_frames]
        return crop - crop.mean(dim=-1, keepdim=True), self.labels[index]


def compute_features(paths: list[Path], n_mels: int, sample_rate: int = 16000, resample: bool = False,
                     cmn: bool = True, desc: str = "fbank") -> list[torch.Tensor]:
    """Log-mel features ``(F, T)`` of each file (dither 0).

    Every header is checked first (:func:`check_audio_files`); a file shorter than one 25 ms
    frame gives ``(F, 0)`` features (left out of training crops like any utterance shorter than
    the crop, refused as a trial utterance)."""
    from paperzoo.core.runtime import progress
    from paperzoo.rsknet.features import Fbank

    check_audio_files(paths, sample_rate, resample)
    fbank = Fbank(n_mels=n_mels, cmn=cmn, sample_rate=sample_rate)
    features = []
    for path in progress(paths, desc=desc, total=len(paths)):
        wave = read_audio(path, sample_rate, resample)
        features.append(fbank(wave)[0] if wave.numel() >= fbank.min_samples else torch.zeros(n_mels, 0))
    return features


def _locate_trials(trials: str | Path, train_audio_root: Path) -> tuple[Path, Trials]:
    """The default trial root: the list's own folder, else the training audio root."""
    listed = read_trials(trials)
    candidates = list(dict.fromkeys([Path(trials).parent, train_audio_root]))
    for root in candidates:
        if all((root / u).is_file() for u in listed.utterances):
            return root, listed
    missing = next(u for u in listed.utterances if not (candidates[0] / u).is_file())
    raise FileNotFoundError(f"{trials} names files found neither under its own folder "
                            f"{candidates[0]} nor under the training audio root {train_audio_root} "
                            f"(e.g. {missing}); pass trials_root (CLI --trials_root) naming the "
                            "folder its paths are relative to")


class VerificationDataModule(L.LightningDataModule):
    """Training crops from a dataset tree (+ an optional trial list for scoring), section 4-5.

    ``trials`` paths are relative to ``trials_root``; by default the trial list's own folder
    (a test tree holding its ``trials.txt``, as ``score`` and ``validate`` read it) or, when the
    files are not all there, the training layout's audio root (VoxCeleb1-O on a full VoxCeleb1
    tree); a list whose files are under neither is refused, naming both. Trial
    speakers found among the training speakers are refused, or left out of training with
    ``exclude_trial_speakers=True`` (VoxCeleb1-O on a full VoxCeleb1 tree).

    ``crop_generator`` (set by :meth:`setup`) is the training crops' generator, held as a direct
    attribute so that a resumed fit (:class:`paperzoo.core.lightning.ResumeCheckpoint`, which saves
    a datamodule's ``torch.Generator`` attributes) draws the crops an uninterrupted run draws.
    """

    def __init__(self, root: str | Path, layout: str = "folders", trials: str | Path | None = None,
                 trials_root: str | Path | None = None, crop_s: float = 2.0, batch_size: int = 32,
                 resample: bool = False, n_mels: int = 40, sample_rate: int = 16000, seed: int = 0,
                 exclude_trial_speakers: bool = False) -> None:
        super().__init__()
        if crop_s <= 0:
            raise ValueError(f"crop_s must be positive, got {crop_s}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size}")
        if n_mels < 8:
            raise ValueError(f"n_mels must be >= 8, got {n_mels}")
        self.root, self.layout, self.crop_s, self.batch_size = Path(root), layout, crop_s, batch_size
        self.resample, self.n_mels, self.sample_rate, self.seed = resample, n_mels, sample_rate, seed
        self.utterances = scan_utterances(root, layout)
        self.trials = self.trials_root = None
        if trials is not None:
            if trials_root is not None:
                self.trials_root = Path(trials_root)
                self.trials = read_trials(trials, self.trials_root)
            else:
                self.trials_root, self.trials = _locate_trials(trials, _audio_root(self.root, layout))
            test_speakers = {trial_speaker(u) for u in self.trials.utterances}
            overlap = sorted(test_speakers & {u.speaker for u in self.utterances})
            if overlap and not exclude_trial_speakers:
                raise ValueError(f"{len(overlap)} trial speaker(s) are also training speakers "
                                 f"(e.g. {overlap[0]}); pass exclude_trial_speakers=True to leave "
                                 "them out of training")
            self.utterances = [u for u in self.utterances if u.speaker not in test_speakers]
        self.speakers = sorted({u.speaker for u in self.utterances})
        if len(self.speakers) < 2:
            raise ValueError(f"{root} has {len(self.speakers)} training speaker(s); need at least 2")
        self.crop_frames = int(round(crop_s * 100)) - 2  # 25 ms windows every 10 ms
        self._train = None
        self._val: list[torch.Tensor] | None = None
        self.crop_generator: torch.Generator | None = None

    @property
    def n_classes(self) -> int:
        return len(self.speakers)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        index = {s: i for i, s in enumerate(self.speakers)}
        feats = compute_features([u.path for u in self.utterances], self.n_mels, self.sample_rate,
                                 self.resample, cmn=False, desc="train fbank")
        self._train = CropDataset(feats, [index[u.speaker] for u in self.utterances],
                                  self.crop_frames, self.seed)
        self.crop_generator = self._train.generator
        if self.trials is not None:  # whole trial utterances, fbank with CMN as embed/score use
            self._val = compute_features([self.trials_root / u for u in self.trials.utterances],
                                         self.n_mels, self.sample_rate, self.resample, desc="trial fbank")

    def train_dataloader(self):
        self.setup()
        generator = torch.Generator().manual_seed(self.seed)
        return torch.utils.data.DataLoader(self._train, batch_size=self.batch_size, shuffle=True,
                                           drop_last=True, generator=generator, num_workers=0)

    def val_dataloader(self):
        """``(features (1, F, T), index)`` of each trial utterance, in ``trials.utterances``
        order, one at a time (whole utterances, no padding); none without a trial list."""
        self.setup()
        if self._val is None:
            return []
        items = [(f, i) for i, f in enumerate(self._val)]
        return torch.utils.data.DataLoader(items, batch_size=1, shuffle=False, num_workers=0)

