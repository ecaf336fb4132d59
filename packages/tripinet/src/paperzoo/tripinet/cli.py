"""``paperzoo-tripinet``: train, test and run a three-stream manipulation localiser."""

from __future__ import annotations

from collections.abc import Sequence

from paperzoo.core.cli import run_cli
from paperzoo.tripinet import __version__, commands


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(
        "paperzoo-tripinet",
        {
            "train": commands.train,
            "test": commands.test,
            "predict": commands.predict,
            "demo": commands.demo,
            "validate": commands.validate,
        },
        argv,
        description="Image manipulation localisation from RGB, noise and frequency streams "
        "(TriPINet, Liang, Xu, Jin, arXiv:2212.12841).",
        version=__version__,
    )
