from __future__ import annotations

import os

import pytest

from paperzoo.core.runtime import torch_threads

os.environ.setdefault("PAPERZOO_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test runs on one torch thread (the CI budget); the caller's setting is restored."""
    with torch_threads(1):
        yield


def _write_wav(path, seconds=1.0, rate=16000, channels=1, seed=0):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype("float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio if channels > 1 else audio[:, 0], rate)
    return path


@pytest.fixture
def write_wav():
    """Write a mono (or multi-channel) noise file: ``write_wav(path, seconds, rate, channels, seed)``."""
    return _write_wav
