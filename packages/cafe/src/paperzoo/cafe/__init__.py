"""CAFE: catastrophic data leakage in vertical federated learning (Jin et al., NeurIPS 2021).

The attack (:class:`CafeAttack`), the VFL protocol it observes (:class:`VerticalFL`), the DLG
baseline, the defences and the metrics. Heavy modules load on first use, so importing this
package does not import torch or Lightning.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "attack": ["CafeAttack", "CafeConfig", "IndexAlignedAdam"],
    "protocol": ["VerticalFL", "ObservedRound", "image_partition"],
    "baselines": ["DLGAttack"],
    "defenses": ["FakeGradients", "GaussianNoise", "GradientPruning", "ClipAndNoise",
                "make_defense"],
    "model": ["create_model", "list_models"],
    "metrics": ["psnr_per_image"],
    "data": ["load_dataset"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
