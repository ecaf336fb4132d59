"""``paperzoo-rco``: train a teacher's route, distil along it, and check the method."""

from __future__ import annotations

from collections.abc import Sequence

from paperzoo.core.cli import run_cli
from paperzoo.rco import __version__, commands


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "paperzoo-rco",
        {
            "train-teacher": commands.train_teacher,
            "distill": commands.distill,
            "kd": commands.kd,
            "demo": commands.demo,
            "validate": commands.validate,
            "benchmark": commands.benchmark,
        },
        argv,
        description="Knowledge distillation via route-constrained optimisation (Jin et al., ICCV 2019).",
        version=__version__,
    )
