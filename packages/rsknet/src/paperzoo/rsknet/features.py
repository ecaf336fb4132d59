"""Log-mel filterbank input features (paper section 2): Kaldi-compatible fbank from torchaudio,
25 ms windows every 10 ms, per-utterance mean removal (CMN), no dither at scoring."""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import nn


def import_torchaudio(module: str = "torchaudio") -> ModuleType:
    """Import ``module`` of torchaudio, or raise an ``ImportError`` that names both releases.

    torchaudio's compiled library only loads on the torch release it was built for (torchaudio
    2.11.0 on torch 2.5 fails with an undefined symbol); that low-level ``OSError`` would
    otherwise surface from the middle of feature extraction.
    """
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as error:
        try:
            from importlib.metadata import version

            audio = version("torchaudio")
        except Exception:  # noqa: BLE001 - not installed at all
            audio = "not installed"
        raise ImportError(
            f"{module} could not be loaded (torch {torch.__version__}, torchaudio {audio}): "
            "paperzoo-rsknet needs torchaudio built for the installed torch, the same release "
            "of both (torch 2.11.0 with torchaudio 2.11.0); "
            f"install them together, e.g. pip install 'torch==2.11.0' 'torchaudio==2.11.0' ({error})"
        ) from error


class Fbank(nn.Module):
    """``(N,)`` or ``(B, N)`` waveforms in [-1, 1] -> ``(B, n_mels, T)`` log-mel features.

    torchaudio's ``compliance.kaldi.fbank`` on samples x 32768 (Kaldi's 16-bit scale); with
    ``cmn`` the per-utterance mean over time is subtracted. ``dither`` is 0 by default so that
    the same audio always gives the same features.
    """

    def __init__(self, n_mels: int = 80, dither: float = 0.0, cmn: bool = True,
                 sample_rate: int = 16000, frame_length_ms: float = 25.0,
                 frame_shift_ms: float = 10.0) -> None:
        super().__init__()
        if n_mels < 1:
            raise ValueError(f"n_mels must be positive, got {n_mels}")
        if sample_rate < 1000:
            raise ValueError(f"sample_rate must be a rate in Hz (>= 1000), got {sample_rate}")
        if dither < 0:
            raise ValueError(f"dither must be >= 0, got {dither}")
        self.n_mels, self.dither, self.cmn, self.sample_rate = n_mels, dither, cmn, sample_rate
        self.frame_length_ms, self.frame_shift_ms = frame_length_ms, frame_shift_ms

    @property
    def min_samples(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    def num_frames(self, num_samples: int) -> int:
        """Frames Kaldi's fbank makes from ``num_samples`` (snip_edges=True)."""
        shift = int(self.sample_rate * self.frame_shift_ms / 1000)
        return 0 if num_samples < self.min_samples else 1 + (num_samples - self.min_samples) // shift

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        kaldi = import_torchaudio("torchaudio.compliance.kaldi")

        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(f"Fbank expects (N,) or (B, N) waveforms, got shape {tuple(wave.shape)}")
        if wave.shape[-1] < self.min_samples:
            raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than one "
                             f"{self.frame_length_ms:g} ms frame ({self.min_samples} samples)")
        feats = []
        for row in wave.float():
            fb = kaldi.fbank(row.unsqueeze(0) * 32768.0, num_mel_bins=self.n_mels,
                             frame_length=self.frame_length_ms, frame_shift=self.frame_shift_ms,
                             dither=self.dither, sample_frequency=float(self.sample_rate),
                             window_type="hamming", use_energy=False)
            if self.cmn:
                fb = fb - fb.mean(dim=0, keepdim=True)
            feats.append(fb.transpose(0, 1))
        return torch.stack(feats)
