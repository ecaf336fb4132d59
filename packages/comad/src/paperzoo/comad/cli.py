"""The ``paperzoo-comad`` command."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.comad import __version__, commands
    from paperzoo.core.cli import run_cli

    return run_cli(
        "paperzoo-comad",
        {
            "fit": commands.fit,
            "score": commands.score,
            "explain": commands.explain,
            "generate": commands.generate,
            "demo": commands.demo,
            "validate": commands.validate,
        },
        argv,
        description="ComAD: component-aware logical anomaly detection fused with PatchCore "
        "(Liu et al., Adv. Eng. Informatics 2023).",
        version=__version__,
    )
