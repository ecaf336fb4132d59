"""CAFE: catastrophic data leakage in vertical federated learning (Jin et al., NeurIPS 2021).

The attack (:class:`CafeAttack`), the VFL protocol it observes (:class:`VerticalFL`), the DLG
baseline, the defences and the metrics. Heavy modules load on first use, so importing this
package does not import torch or Lightning.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CafeAttack": "attack",
    "CafeConfig": "attack",
    "IndexAlignedAdam": "attack",
    "VerticalFL": "protocol",
    "ObservedRound": "protocol",
    "image_partition": "protocol",
    "DLGAttack": "baselines",
    "FakeGradients": "defenses",
    "GaussianNoise": "defenses",
    "GradientPruning": "defenses",
    "ClipAndNoise": "defenses",
    "make_defense": "defenses",
    "create_model": "model",
    "list_models": "model",
    "psnr_per_image": "metrics",
    "load_dataset": "data",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
