"""The command-line builder every method uses, on jsonargparse (Lightning's own CLI library).

A method's ``cli.py`` holds only ``main()``::

    def main(argv=None) -> int:
        return run_cli("paperzoo-rco", {"demo": commands.demo, "validate": commands.validate},
                       argv, description="...", version=__version__)

Each command is a plain function with typed keyword arguments (their docstring ``Args:`` become
the help). It must accept ``out``; ``seed``, ``device`` and ``overwrite`` are passed when its
signature names them. Every subcommand gets ``--config file.yaml``, ``--print_config``,
``--seed``, ``--out DIR``, ``--device auto|cpu|cuda`` and ``--overwrite``. Before a command runs,
the builder refuses an existing non-empty ``--out`` unless ``--overwrite`` is given, creates the
folder, seeds every generator and saves the resolved configuration as ``DIR/config.yaml``.
Errors the user can fix (``ValueError``, ``FileNotFoundError``, ``FileExistsError``) print one line
naming the problem and exit with status 2; ``PAPERZOO_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from paperzoo.core.results import atomic_write_text
from paperzoo.core.runtime import resolve_device, seed_everything

COMMON = ("seed", "out", "device", "overwrite")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out``; refuse one that already holds files unless ``overwrite`` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} already holds results; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _command_parser(name: str, function: Callable, prog: str, default_out: str):
    from jsonargparse import ActionConfigFile, ArgumentParser

    doc = inspect.getdoc(function) or ""
    parser = ArgumentParser(prog=f"{prog} {name}", description=doc.split("\n\n")[0] or None,
                            exit_on_error=True, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every random generator.")
    parser.add_argument("--out", type=str, default=f"{default_out}/{name}",
                        help="Folder for every output (config, metrics.json, tables, plots).")
    parser.add_argument("--device", type=Literal["auto", "cpu", "cuda"], default="auto",
                        help="Where tensors live: auto picks cuda when available.")
    parser.add_argument("--overwrite", type=bool, default=False,
                        help="Allow writing into an --out folder that already holds results.")
    parser.add_function_arguments(function, skip=set(COMMON), fail_untyped=True)
    return parser


def build_parser(prog: str, commands: Mapping[str, Callable], description: str | None = None,
                 version: str | None = None):
    """The jsonargparse parser with one subcommand per entry of ``commands``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, default_env=False)
    if version is not None:
        parser.add_argument("--version", action="version", version=f"{prog} {version}")
    subcommands = parser.add_subcommands(required=True, dest="command")
    default_out = f"runs/{prog}"
    for name, function in commands.items():
        if "out" not in inspect.signature(function).parameters:
            raise TypeError(f"command {name!r} ({function.__qualname__}) must accept an `out` argument")
        subparser = _command_parser(name, function, prog, default_out)
        summary = (inspect.getdoc(function) or "").split("\n")[0]
        subcommands.add_subcommand(name, subparser, help=summary)
    return parser


def _call(function: Callable, config: dict[str, Any], out: Path, device: str) -> Any:
    accepted = inspect.signature(function).parameters
    kwargs = {k: v for k, v in config.items() if k in accepted and k not in COMMON}
    kwargs["out"] = out
    if "seed" in accepted:
        kwargs["seed"] = config["seed"]
    if "device" in accepted:
        kwargs["device"] = device
    if "overwrite" in accepted:
        kwargs["overwrite"] = config["overwrite"]
    return function(**kwargs)


def run_cli(
    prog: str,
    commands: Mapping[str, Callable],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    version: str | None = None,
) -> int:
    """Parse ``argv``, run the chosen command, return the exit status (0 on success)."""
    parser = build_parser(prog, commands, description, version)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    name = args.command
    sub_args = args[name]
    function = commands[name]
    try:
        out = prepare_out_dir(sub_args.out, bool(sub_args.overwrite))
        device = resolve_device(sub_args.device)
        seed_everything(int(sub_args.seed))
        sub_parser = parser._subcommands_action._name_parser_map[name]
        config_yaml = sub_parser.dump(sub_args)
        atomic_write_text(out / "config.yaml", config_yaml)
        started = time.perf_counter()
        result = _call(function, sub_args.as_dict(), out, device)
        elapsed = time.perf_counter() - started
    except USER_ERRORS as error:
        if os.environ.get("PAPERZOO_DEBUG"):
            raise
        print(f"{prog} {name}: error: {error}", file=sys.stderr)
        return 2
    if isinstance(result, Mapping):
        shown = {k: v for k, v in result.items() if isinstance(v, int | float)}
        if shown:
            print(json.dumps(shown, indent=1, sort_keys=True))
    print(f"{prog} {name}: done in {elapsed:.1f} s, outputs in {out}")
    return 0
