"""Knowledge distillation via route-constrained optimisation (RCO).

Jin, Peng, Wu, Liu, Liu, Liang, Yan, Hu, *Knowledge Distillation via Route Constrained
Optimization*, ICCV 2019 (arXiv:1904.09149). The student follows the teacher's training route:
it is supervised by a sequence of the teacher's intermediate checkpoints (anchors), easy to hard,
ending at the converged teacher.

Importing this package is light; the parts load on first use::

    from paperzoo.rco import TeacherRoute, RCODistiller, equal_interval
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "TeacherRoute": "route",
    "RouteRecorder": "route",
    "RouteRecord": "route",
    "equal_interval": "anchors",
    "explicit": "anchors",
    "GreedySelector": "anchors",
    "KDLoss": "losses",
    "HintLoss": "losses",
    "MimicLoss": "losses",
    "create_model": "model",
    "list_models": "model",
    "TeacherModule": "module",
    "RCODistiller": "module",
    "KDDistiller": "module",
    "DigitsDataModule": "data",
    "HierarchicalGaussianDataModule": "data",
    "CIFAR100DataModule": "data",
    "ImageFolderDataModule": "data",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
