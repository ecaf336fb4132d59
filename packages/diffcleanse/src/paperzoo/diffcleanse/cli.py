"""``paperzoo-diffcleanse``: train, backdoor, detect, remove, evaluate, demo and validate."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.core.cli import run_cli
    from paperzoo.diffcleanse import __version__, commands

    return run_cli(
        "paperzoo-diffcleanse",
        {
            "train": commands.train,
            "backdoor": commands.backdoor,
            "detect": commands.detect,
            "remove": commands.remove,
            "evaluate": commands.evaluate,
            "demo": commands.demo,
            "validate": commands.validate,
        },
        argv,
        description="Diff-Cleanse (Jiang et al., 2024): find backdoors in diffusion models by black-box "
        "trigger inversion and remove them by structural pruning and a dual-loss fine-tune.",
        version=__version__,
    )
