"""RSKNet-MTSP: selective-kernel residual networks with multiple time-scale statistics pooling
for speaker verification (Wu, Guo, Zhao, Jin, Xu, arXiv:2108.13249, 2021).

Importing this package is light; the parts load on first use::

    from paperzoo.rsknet import create_model, Fbank, eer, min_dcf, train_speaker_model
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "layers": ["SKConv2d", "RSKBlock", "BasicBlock", "MTSP", "LowRankLinear", "LowRankConv1x1",
               "SeparableConv2d"],
    "model": ["SpeakerResNet", "XVector", "create_model", "list_models"],
    "features": ["Fbank"],
    "losses": ["AAMSoftmax", "MarginScheduler"],
    "metrics": ["eer", "min_dcf", "det_curve", "EER", "MinDCF"],
    "scoring": ["cosine", "as_norm", "s_norm", "calibrate_threshold"],
    "compress": ["count_params", "macs", "lowrank_from_dense"],
    "data": ["read_audio", "read_trials", "scan_utterances", "VerificationDataModule"],
    "synth": ["make_corpus"],
    "module": ["SpeakerModule"],
    "pipeline": ["train_speaker_model", "extract_embeddings", "embed_features", "score_trials",
                 "save_speaker_model", "load_speaker_model", "read_embeddings"],
    "validation": ["ValidationConfig", "run_validation"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
