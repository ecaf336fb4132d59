"""An offline multi-speaker corpus (section 4): espeak-ng voice variants (main engine) or a
procedural source-filter synthesiser (no system package), both with a random channel (gain,
peaking-EQ biquad, noise at 5-20 dB SNR).

Layout written under ``out``: ``{train,test}/<speaker>/<utt>.wav`` (16 kHz mono),
``test/trials.txt`` (every pair of test utterances, ``<1|0> <enroll> <test>``, paths relative to
``test/``) and ``corpus.json`` (voices, texts, seed). Train and test speakers are disjoint.
Every utterance gets a new sentence (never repeated), so equal audio means equal input.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import tempfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

ENGINES = ("espeak", "procedural")
ESPEAK_TIMEOUT_S = 60.0  # wall-clock limit of one espeak-ng call (one utterance, or --version)
ESPEAK_BASES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp")
WORDS = (
    "the a one two three four five six seven eight nine ten red green blue yellow black white "
    "small large quick slow bright dark warm cold river mountain forest city garden window door "
    "table chair paper letter morning evening winter summer spring autumn ocean island bridge "
    "market station train bus car bicycle road street house school teacher doctor farmer driver "
    "singer painter writer reader child mother father sister brother friend neighbour stranger "
    "walks runs jumps sings reads writes paints builds opens closes finds keeps brings carries "
    "watches hears sees knows thinks makes takes gives holds moves turns leaves follows "
    "quietly loudly slowly quickly happily sadly gently firmly often never always sometimes "
    "under over behind beside between near across through around toward after before during "
    "apple orange lemon bread cheese butter coffee water milk honey sugar salt pepper rice "
    "stone glass metal wood silver golden copper cotton woollen leather plastic velvet "
    "number picture story question answer problem reason moment minute hour week month year "
    "north south east west left right middle corner edge centre surface shadow light sound "
    "music silence thunder lightning rain snow wind cloud storm sunshine rainbow valley hill"
).split()


@dataclass
class CorpusInfo:
    """What :func:`make_corpus` wrote (also stored as ``corpus.json``)."""

    root: str
    engine: str
    seed: int
    sample_rate: int
    train_speakers: list[str]
    test_speakers: list[str]
    n_target: int
    n_nontarget: int
    voices: dict[str, dict] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def train_root(self) -> Path:
        return Path(self.root) / "train"

    @property
    def test_root(self) -> Path:
        return Path(self.root) / "test"

    @property
    def trials(self) -> Path:
        return Path(self.root) / "test" / "trials.txt"


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _espeak_data_dir() -> Path:
    try:
        text = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True,
                              timeout=ESPEAK_TIMEOUT_S).stdout
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"espeak-ng --version did not finish within {ESPEAK_TIMEOUT_S:g} s "
                           "(synth.ESPEAK_TIMEOUT_S)") from None
    if "Data at:" not in text:
        raise RuntimeError(f"cannot find espeak-ng's data folder in {text!r}")
    return Path(text.split("Data at:", 1)[1].strip())


def _private_espeak_path(tmp: Path) -> Path:
    """A copy of espeak-ng's data folder (symlinks) whose ``voices/!v`` holds our variants only."""
    system = _espeak_data_dir()
    data = tmp / "espeak-ng-data"
    (data / "voices" / "!v").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    return data / "voices" / "!v"


def _espeak_voice(rng: np.random.Generator) -> dict:
    female = bool(rng.random() < 0.5)
    return {
        "base": str(rng.choice(ESPEAK_BASES)),
        "gender": "female" if female else "male",
        "formants": [int(v) for v in rng.integers(85, 116, size=6)],
        "heights": [int(v) for v in rng.integers(80, 121, size=6)],
        "pitch_base": int(rng.integers(160, 230) if female else rng.integers(75, 135)),
        "pitch_range": int(rng.integers(40, 140)),
        "breath": int(rng.integers(0, 30)),
        "roughness": int(rng.integers(0, 5)),
        "pitch": int(rng.integers(30, 71)),
    }


def _variant_file(name: str, voice: dict) -> str:
    lines = [f"name {name}", "language variant", f"gender {voice['gender']}",
             f"pitch {voice['pitch_base']} {voice['pitch_base'] + voice['pitch_range']}"]
    for k, (freq, height) in enumerate(zip(voice["formants"], voice["heights"])):
        lines.append(f"formant {k} {freq} {height} 100")
    lines.append("breath " + " ".join([str(voice["breath"])] * 8))
    lines.append(f"roughness {voice['roughness']}")
    return "\n".join(lines) + "\n"


def _espeak_utterance(path_dir: Path, variant: str, voice: dict, text: str,
                      rng: np.random.Generator, utt: str | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    pitch = int(np.clip(voice["pitch"] + rng.integers(-5, 6), 0, 99))
    speed = int(rng.integers(140, 181))
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        command = ["espeak-ng", f"--path={path_dir}", "-v", f"{voice['base']}+{variant}",
                   "-p", str(pitch), "-s", str(speed), "-w", tmp.name, text]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=ESPEAK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"espeak-ng did not finish within {ESPEAK_TIMEOUT_S:g} s "
                               f"(synth.ESPEAK_TIMEOUT_S) synthesising {utt or 'an utterance'} "
                               f"(voice {voice['base']}+{variant}, text {text!r})") from None
        if done.returncode != 0:
            raise RuntimeError(f"espeak-ng failed ({' '.join(command[:6])} ...): {done.stderr.strip()}")
        audio, rate = sf.read(tmp.name, dtype="float32")
    return audio, rate


# Procedural engine: F1-F4 (Hz) of eight vowel targets of an average adult vocal tract.
VOWELS = np.array([[730, 1090, 2440, 3400], [270, 2290, 3010, 3700], [530, 1840, 2480, 3500],
                   [660, 1720, 2410, 3400], [300, 870, 2240, 3300], [570, 840, 2410, 3300],
                   [440, 1020, 2240, 3300], [490, 1350, 1690, 3200]], dtype=np.float64)


def _procedural_voice(rng: np.random.Generator) -> dict:
    return {"f0": float(rng.uniform(85, 250)), "tract_scale": float(rng.uniform(0.82, 1.18)),
            "tilt": float(rng.uniform(0.85, 0.98)), "breathiness": float(rng.uniform(0.0, 0.3)),
            "jitter": float(rng.uniform(0.0, 0.03)),
            "bandwidths": [float(v) for v in rng.uniform(50, 130, size=4)]}


def _resonator(signal: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / rate)
    theta = 2 * np.pi * freq / rate
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1.0 - r], a, signal)


def _procedural_utterance(voice: dict, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """Random phones (vowel targets, noise bursts) through a speaker's source-filter model."""
    from scipy.signal import lfilter

    n_phones = int(rng.integers(14, 24))
    pieces = []
    contour = voice["f0"] * (1 + 0.15 * np.sin(np.linspace(0, rng.uniform(1, 4) * np.pi, n_phones)))
    for k in range(n_phones):
        n = int(rate * rng.uniform(0.07, 0.2))
        if rng.random() < 0.2:  # a fricative-like noise burst
            burst = rng.standard_normal(n) * 0.05
            pieces.append(_resonator(burst, rng.uniform(2500, 6000), 800, rate))
            continue
        f0 = contour[k] * (1 + voice["jitter"] * rng.standard_normal(n))
        phase = np.cumsum(f0 / rate)
        pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
        source = lfilter([1.0], [1.0, -voice["tilt"]], pulses)
        source += voice["breathiness"] * rng.standard_normal(n) * 0.3
        formants = VOWELS[rng.integers(len(VOWELS))] * voice["tract_scale"]
        out = source
        for freq, bw in zip(formants, voice["bandwidths"]):
            out = _resonator(out, min(freq, rate / 2 - 200), bw, rate)
        envelope = np.hanning(n) ** 0.3
        pieces.append(out * envelope)
    audio = np.concatenate(pieces)
    return (audio / (np.abs(audio).max() + 1e-9) * 0.5).astype(np.float32)


def _channel(audio: np.ndarray, rate: int, rng: np.random.Generator, snr_db: tuple[float, float]) -> np.ndarray:
    """Random gain, one random peaking-EQ biquad and white noise at a random SNR (section 4)."""
    from scipy.signal import lfilter

    freq, gain_db, q = rng.uniform(200, 4000), rng.uniform(-9, 9), rng.uniform(0.5, 2.0)
    a_gain = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / rate
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * a_gain, -2 * np.cos(w0), 1 - alpha * a_gain]
    a = [1 + alpha / a_gain, -2 * np.cos(w0), 1 - alpha / a_gain]
    audio = lfilter(b, a, audio.astype(np.float64))
    power = np.mean(audio**2) + 1e-12
    snr = rng.uniform(*snr_db)
    audio = audio + rng.standard_normal(audio.shape) * np.sqrt(power / 10 ** (snr / 10))
    audio = audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.1, 0.9)
    return audio.astype(np.float32)


def _sentence(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 15))))
        if text not in used:
            used.add(text)
            return text


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {value!r}")


def make_corpus(out: str | Path, engine: str = "espeak", train_speakers: int = 48, train_utts: int = 16,
                test_speakers: int = 16, test_utts: int = 8, seed: int = 0, sample_rate: int = 16000,
                snr_db: tuple[float, float] = (5.0, 20.0), overwrite: bool = False) -> CorpusInfo:
    """Synthesise the corpus under ``out`` (see the module docstring); returns its :class:`CorpusInfo`.

    Refuses a non-empty ``out`` without ``overwrite``; ``engine="espeak"`` needs espeak-ng.
    """
    from paperzoo.core.results import atomic_write_text
    from paperzoo.core.runtime import progress

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    _check_counts(train_speakers=train_speakers, train_utts=train_utts, test_speakers=test_speakers,
                  test_utts=test_utts)
    if not 0 <= snr_db[0] <= snr_db[1]:
        raise ValueError(f"snr_db must be (low, high) with 0 <= low <= high, got {snr_db}")
    if engine == "espeak" and not espeak_available():
        raise FileNotFoundError("engine 'espeak' needs the espeak-ng program (Debian: apt-get install "
                                "espeak-ng); or use --engine procedural")
    out = Path(out)
    existing = [out / n for n in ("train", "test", "corpus.json") if (out / n).exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(f"{out} already holds a corpus ({existing[0].name}); pass "
                                  "--overwrite to replace it")
        for sub in ("train", "test"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / "corpus.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    import soundfile as sf
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    n_total = train_speakers + test_speakers
    speakers = [f"spk{i:03d}" for i in range(n_total)]
    plan = [("train", s, train_utts) for s in speakers[:train_speakers]] + \
           [("test", s, test_utts) for s in speakers[train_speakers:]]
    info = CorpusInfo(str(out), engine, seed, sample_rate, speakers[:train_speakers],
                      speakers[train_speakers:], 0, 0)
    used: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="rsknet-espeak-") as tmp:
        variants_dir = _private_espeak_path(Path(tmp)) if engine == "espeak" else None
        for _split, speaker, _ in plan:
            voice = _espeak_voice(rng) if engine == "espeak" else _procedural_voice(rng)
            info.voices[speaker] = voice
            if variants_dir is not None:
                (variants_dir / speaker).write_text(_variant_file(speaker, voice))
        jobs = [(split, spk, u) for split, spk, n in plan for u in range(n)]
        for split, speaker, u in progress(jobs, desc=f"synth ({engine})", total=len(jobs)):
            voice = info.voices[speaker]
            text = _sentence(rng, used)
            if engine == "espeak":
                audio, rate = _espeak_utterance(Path(tmp), speaker, voice, text, rng,
                                                utt=f"{split}/{speaker}/u{u:02d}.wav")
            else:
                audio, rate = _procedural_utterance(voice, rng, sample_rate), sample_rate
            if rate != sample_rate:
                g = np.gcd(rate, sample_rate)
                audio = resample_poly(audio, sample_rate // g, rate // g)
            audio = _channel(np.asarray(audio), sample_rate, rng, snr_db)
            rel = f"{speaker}/u{u:02d}.wav"
            info.texts[f"{split}/{rel}"] = text
            path = out / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), audio, sample_rate, subtype="PCM_16")
    test_files = [f"{spk}/u{u:02d}.wav" for spk in info.test_speakers for u in range(test_utts)]
    lines = []
    for a, b in itertools.combinations(test_files, 2):
        same = a.split("/")[0] == b.split("/")[0]
        lines.append(f"{int(same)} {a} {b}")
        info.n_target += int(same)
        info.n_nontarget += int(not same)
    atomic_write_text(info.trials, "\n".join(lines) + "\n")
    atomic_write_text(out / "corpus.json", json.dumps(asdict(info), indent=1) + "\n")
    return info


def read_corpus_info(root: str | Path) -> CorpusInfo:
    """The :class:`CorpusInfo` of a corpus folder, from its ``corpus.json``; a missing, non-UTF-8
    or invalid file, or one without :class:`CorpusInfo`'s fields, is refused naming the file."""
    from paperzoo.core.data import read_json

    path = Path(root) / "corpus.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a corpus written by make_corpus")
    content = read_json(path, "corpus description")
    if not isinstance(content, dict):
        raise ValueError(f"corpus description {path} holds a JSON {type(content).__name__}, not an "
                         "object; not a corpus written by make_corpus")
    known = {f.name for f in fields(CorpusInfo)}
    required = [f.name for f in fields(CorpusInfo) if f.default is MISSING and f.default_factory is MISSING]
    problems = []
    if missing := [name for name in required if name not in content]:
        problems.append(f"lacks {', '.join(missing)}")
    if unknown := sorted(set(content) - known):
        problems.append(f"has unknown field(s) {', '.join(unknown)}")
    if problems:
        raise ValueError(f"corpus description {path} {'; '.join(problems)}; not a corpus written by "
                         "make_corpus")
    return CorpusInfo(**content)
