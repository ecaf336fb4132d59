"""``paperzoo-cafe``: the CAFE attack, the DLG baseline and the defences from the command line."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from paperzoo.cafe import __version__, commands
    from paperzoo.core.cli import run_cli

    return run_cli(
        "paperzoo-cafe",
        {"attack": commands.attack, "dlg": commands.dlg, "defend": commands.defend,
         "sweep": commands.sweep, "demo": commands.demo, "validate": commands.validate},
        argv,
        description="CAFE: catastrophic data leakage in vertical federated learning "
                    "(Jin et al., NeurIPS 2021), with the DLG baseline and defences.",
        version=__version__,
    )
