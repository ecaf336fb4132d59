"""Knowledge distillation via route-constrained optimisation (RCO).

Jin, Peng, Wu, Liu, Liu, Liang, Yan, Hu, *Knowledge Distillation via Route Constrained
Optimization*, ICCV 2019 (arXiv:1904.09149). The student follows the teacher's training route:
it is supervised by a sequence of the teacher's intermediate checkpoints (anchors), easy to hard,
ending at the converged teacher.

Importing this package is light; the parts load on first use::

    from paperzoo.rco import TeacherRoute, RCODistiller, equal_interval
    from paperzoo.rco.pipeline import train_teacher, distill_student   # the library-level runs
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

__getattr__, _lazy_dir, _lazy_names = lazy_loader.attach(__name__, submod_attrs={
    "route": ["TeacherRoute", "RouteRecord"],
    "anchors": ["equal_interval", "explicit", "GreedySelector"],
    "losses": ["KDLoss", "HintLoss", "MimicLoss", "model_output"],
    "model": ["create_model", "list_models"],
    "config": ["ValidationConfig"],
    "module": ["TeacherModule", "RCODistiller", "KDDistiller"],
    "callbacks": ["RouteRecorder"],
    "data": ["DigitsDataModule", "HierarchicalGaussianDataModule", "CIFAR100DataModule",
             "ImageFolderDataModule", "NpzDataModule", "ClassFolderDataModule", "make_datamodule"],
    "validation": ["run_experiment", "paired_statistics"],
})
__all__ = ["__version__", *_lazy_names]


def __dir__() -> list[str]:
    return __all__
