"""TriPINet: image manipulation localisation from RGB, noise and frequency streams
(Liang, Xu, Jin, arXiv:2212.12841, 2022).

Importing this package is light; the parts load on first use::

    from paperzoo.tripinet import create_model, ForgeryGenerator, pixel_f1
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(
    __name__,
    submod_attrs={
        "traces": ["SRMFilter", "BayarConv2d", "BlockDCT", "DCTHighPass", "FFTHighPass"],
        "model": ["GCMDA", "PISE", "TriPINet", "create_model", "list_models"],
        "metrics": ["pixel_f1", "pixel_auc", "image_auc", "image_f1", "f1_best_per_image"],
        "baselines": ["NoiseVarianceBaseline"],
        "forgery": ["ForgeryGenerator", "perturb"],
        "data": ["IMLDataModule", "SyntheticForgeryDataModule", "list_layout", "read_forgery_mask"],
        "module": ["TriPINetModule"],
        "pipeline": [
            "train_localizer",
            "evaluate_localizer",
            "predict_masks",
            "TrainResult",
            "Evaluation",
        ],
    },
)
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
