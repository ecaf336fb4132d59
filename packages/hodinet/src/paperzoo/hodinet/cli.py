"""``paperzoo-hodinet``: train, test, predict, demo and validate HODINet from the command line."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.core.cli import run_cli
    from paperzoo.hodinet import __version__, commands

    return run_cli(
        "paperzoo-hodinet",
        {"train": commands.train, "test": commands.test, "predict": commands.predict,
         "demo": commands.demo, "validate": commands.validate},
        argv,
        description="HODINet: RGB-D salient object detection with high-order attention fusion "
                    "(Yi et al., 2023), with add-fusion and single-modality baselines.",
        version=__version__,
    )
