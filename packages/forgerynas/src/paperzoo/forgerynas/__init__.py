"""forgerynas: architecture search for general face-forgery detection (Jin, Mu, Xu, 2023).

The central-difference search space and its ops, the partial-channel supernet with edge
normalisation, operation importance and pruning, genotypes, the derived evaluation network and its
baselines, the synthetic forgery domains and the FF++ / Celeb-DF loaders. Heavy modules load on
first use, so importing this package does not import torch or Lightning.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "ops": ["CDCConv2d", "SepCDC", "DilCDC", "SPACES", "build_op"],
        "search_space": [
            "Genotype",
            "random_genotype",
            "load_genotype",
            "resolve_genotype",
            "BUILTIN_GENOTYPES",
        ],
        "supernet": [
            "PCMixedOp",
            "SearchCell",
            "Supernet",
            "OperationImportance",
            "prune",
            "derive_genotype",
        ],
        "model": ["CascadedPyramidNet", "HandCNN", "TimmNet", "create_model", "list_models"],
        "forgeries": ["make_domain", "ForgeryDomain", "DOMAINS", "GENERATOR_VERSION"],
        "probe": ["colour_histograms", "shortcut_probe_auc"],
        "metrics": ["forgery_scores", "equal_error_rate", "video_auc"],
        "data": ["FrameList", "load_frames", "ffpp_frames", "celebdf_frames", "csv_frames"],
        "pipeline": [
            "SearchConfig",
            "SearchResult",
            "search_architecture",
            "train_detector",
            "evaluate_detector",
            "TrainConfig",
        ],
    },
)
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
