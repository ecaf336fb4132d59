"""The ``paperzoo-advdiffsr`` command."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.advdiffsr import __version__, commands
    from paperzoo.core.cli import run_cli

    return run_cli(
        "paperzoo-advdiffsr",
        {
            "simulate": commands.simulate,
            "train": commands.train,
            "predict": commands.predict,
            "uncertainty": commands.uncertainty,
            "demo": commands.demo,
            "validate": commands.validate,
        },
        argv,
        description="Self-supervised physics-constrained super-resolution of advection-diffusion "
        "(after S3RP, Wang et al., arXiv:2111.04639; clean-room reconstruction).",
        version=__version__,
    )
