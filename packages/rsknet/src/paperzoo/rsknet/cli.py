"""The ``paperzoo-rsknet`` command."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.core.cli import run_cli
    from paperzoo.rsknet import __version__, commands

    return run_cli(
        "paperzoo-rsknet",
        {"synth": commands.synth, "train": commands.train, "embed": commands.embed,
         "score": commands.score, "params": commands.params, "demo": commands.demo,
         "validate": commands.validate},
        argv,
        description="RSKNet-MTSP speaker verification: selective-kernel residual networks with "
                    "multi-stage statistics pooling (Wu et al., arXiv:2108.13249).",
        version=__version__,
    )
