"""ComAD: component-aware logical anomaly detection, fused with PatchCore
(Liu, Li, Du, Jiang, Jin, Jin, Zhao, Advanced Engineering Informatics 58 (2023) 102161,
arXiv:2305.08509).

Importing this package is light; the parts load on first use::

    from paperzoo.comad import create_model, fit_category, score_images, generate
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "model": ["ComAD", "ScoreResult", "create_model", "list_models"],
        "features": ["ColourTexture", "DinoViTS8", "TimmViT", "TimmCNN", "create_featuriser"],
        "coreset": ["greedy_coreset"],
        "crf": ["LocalCRF", "DenseCRF", "NoCRF", "CRFParams"],
        "segment": ["ComponentSegmenter"],
        "logical": ["ComponentLogicModel", "LogicalScore", "knn_scores"],
        "patchcore": ["PatchCore"],
        "baselines": ["GlobalKNN", "PerFeatureScorer"],
        "fusion": ["TrimmedZNorm", "raw_sum"],
        "metrics": ["loco_auroc", "segmentation_miou"],
        "data": ["LocoCategory", "ImageSet", "load_images"],
        "synth": ["generate", "generate_category", "SplitSizes"],
        "pipeline": ["fit_category", "fit_images", "score_images", "explain_image"],
    },
)
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
