"""The ``paperzoo-vafl`` command."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.core.cli import run_cli
    from paperzoo.vafl import __version__, commands

    return run_cli(
        "paperzoo-vafl",
        {"train": commands.train, "predict": commands.predict, "privacy": commands.privacy, "convex": commands.convex,
         "demo": commands.demo, "validate": commands.validate},
        argv,
        description="VAFL: vertical asynchronous federated learning with perturbed local embeddings "
                    "(Chen, Jin, Sun, Yin, ICML 2020 FL workshop).",
        version=__version__,
    )
