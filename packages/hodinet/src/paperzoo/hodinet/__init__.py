"""HODINet: RGB-D salient object detection with high-order attention fusion (Yi et al., 2023).

The model and its baselines (:func:`create_model`), the high-order attention and fusions, the SOD
metrics (S-measure, max F-measure, max E-measure, MAE), the RGB-D data sets and the procedural
scenes. Heavy modules load on first use, so importing this package does not import torch or
Lightning.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "model": ["HODINet", "TimmEncoder", "create_model", "list_models"],
    "attention": ["HighOrderAttention", "HOSF", "HOCF"],
    "decoder": ["PyramidBlock", "CascadedPyramidDecoder"],
    "loss": ["hybrid_loss"],
    "metrics": ["SMeasure", "MaxFMeasure", "MaxEMeasure", "SODMAE", "sod_metrics", "SODMetrics", "SODBatch",
                "s_measure", "f_measure_curves", "e_measure_curves", "mae"],
    "scenes": ["SyntheticRGBDScenes"],
    "data": ["RGBDSODFolder", "RGBDSODDataModule", "motorcycle_demo", "normalize_depth"],
    "pipeline": ["train_sod", "evaluate_sod", "predict_map"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
