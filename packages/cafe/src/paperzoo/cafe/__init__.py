"""CAFE: catastrophic data leakage in vertical federated learning (Jin et al., NeurIPS 2021).

The attack (:class:`CafeAttack`), the VFL protocol it observes (:class:`VerticalFL`), the DLG
baseline, the defences, the metrics, and the runs a Python user calls (``run_cafe`` on a
:class:`Scenario`, ``attack_rounds`` on one's own vertical model). Heavy modules load on first use, so importing this
package does not import torch or Lightning.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "config": ["CafeConfig", "DefenseConfig", "Scenario"],
    "attack": ["CafeAttack", "IndexAlignedAdam"],
    "protocol": ["VerticalFL", "ObservedRound", "image_partition", "sample_partition"],
    "baselines": ["DLGAttack"],
    "defenses": ["FakeGradients", "GaussianNoise", "GradientPruning", "ClipAndNoise",
                "make_defense"],
    "model": ["create_model", "list_models", "PartyNet", "VFLModel", "check_vertical_model"],
    "metrics": ["psnr_per_image", "reconstruction_metrics"],
    "data": ["load_dataset", "load_npz"],
    "pipeline": ["attack_rounds", "build_run", "run_cafe", "run_dlg", "run_utility"],
    "validation": ["run_validation"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
