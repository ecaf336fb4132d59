"""``paperzoo-forgerynas``: search, derive, train, evaluate, demo and validate from the command line."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.core.cli import run_cli
    from paperzoo.forgerynas import __version__, commands

    return run_cli(
        "paperzoo-forgerynas",
        {
            "search": commands.search,
            "derive": commands.derive,
            "train": commands.train,
            "evaluate": commands.evaluate,
            "demo": commands.demo,
            "validate": commands.validate,
        },
        argv,
        description="Architecture search for general face-forgery detection (Jin, Mu, Xu, 2023): "
        "partial-channel search over central-difference convolutions, with vanilla DARTS, "
        "random, hand-CNN and timm baselines.",
        version=__version__,
    )
