"""The command-line builder every method uses, on jsonargparse (Lightning's own CLI library).

A method's ``cli.py`` holds only ``main()``::

    def main(argv=None) -> int:
        return run_cli("paperzoo-rco", {"demo": commands.demo, "validate": commands.validate},
                       argv, description="...", version=__version__)

Each command is a plain function with typed keyword arguments (their docstring ``Args:`` become
the help; a dataclass-typed argument is nested: ``--federation.sigma 0.5``). It must accept
``out``; ``seed``, ``device``, ``overwrite`` and ``threads`` are passed when its signature names
them. Every subcommand gets ``--config file.yaml``, ``--print_config``, ``--seed``, ``--out DIR``,
``--device auto|cpu|cuda``, ``--overwrite`` and ``--threads N``. A training command that names
``devices``, ``num_nodes``, ``strategy`` and ``precision`` gets them as uniform options for
Lightning (:data:`TRAINER_OPTIONS`). A command that does not name ``device`` runs on the CPU, and
``--device cuda`` is refused for it rather than silently ignored (a command gets the resolved
device; ``paperzoo.core.runtime.requested_device()`` tells it whether ``cuda`` was typed or
came from ``auto``); likewise a ``--seed`` other than
0 is refused for a command that does not name ``seed``.

Before a command runs, the builder refuses an existing non-empty ``--out`` unless ``--overwrite``
is given, creates the folder, seeds every generator and saves the resolved configuration as
``DIR/config.yaml``; the command runs with ``--threads`` torch threads (0: torch's default) and
the caller's setting is restored after it. A run that fails before writing its ``metrics.json``
leaves no ``config.yaml`` (and no folder it created and left empty) behind, so the corrected
command runs into the same ``--out``; an ``--overwrite`` run that fails so, having written
nothing else, gets the previous run's config back. A run that wrote its ``metrics.json`` and
then raised (a failed pass check) keeps the config that produced it. An ``--overwrite`` run that
succeeds names, on stderr, the earlier run's files it did not rewrite (kept, not deleted).
Errors the user can fix (``ValueError``, ``FileNotFoundError``, ``FileExistsError``,
``NotADirectoryError``, ``TimeoutError`` of an external tool, an invalid option) print one line naming the problem and exit with status 2; ``PAPERZOO_DEBUG=1`` shows the
traceback instead.

Resuming: a training command (one that takes the scale options) that names ``resume`` gets
``--resume``. Its training saves
``DIR/checkpoints/.../last.ckpt`` after every epoch (:class:`paperzoo.core.lightning.ResumeCheckpoint`);
a run that stops after that (a crash, Ctrl-C, a killed job) keeps its ``config.yaml`` and says
so. ``--resume`` then accepts that ``--out``: it checks that the options equal the saved
``config.yaml`` (all but ``--resume``, ``--overwrite`` and ``--threads``; a difference is named),
that the run did not finish (no ``metrics.json``) and that a checkpoint exists, keeps the
config, and calls the command with ``resume=True``. Without ``--resume`` such a folder is
refused with the hint to pass it.

Several processes (``--devices 2 --strategy ddp``, ``--num_nodes``, torchrun, SLURM): Lightning's
``ddp`` relaunches the same command line once per extra device. Global rank 0 owns ``--out``
(the checks, ``config.yaml``, every result); any other rank runs the same command with its
outputs in a temporary folder that is deleted when it ends (or by rank 0, when its failure
kills the ranks it launched), so ranks never race on one file and
the extra ranks' copies of the results do not outlive them. Because of that relaunch, ``ddp``
over several devices is refused when ``run_cli`` is called with an ``argv`` of its own (from
Python or a test): the children would rerun the caller's program. Run the command line itself
(a subprocess), or call the package's functions from a script run with ``strategy="ddp"`` or
under torchrun. The spawning strategies (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``) are
refused before any work (:func:`paperzoo.core.lightning.check_scale`): they return only the
weights to the calling process.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from paperzoo.core.results import METRICS_FILE, atomic_write_text
from paperzoo.core.runtime import (
    device_request,
    rank_scratch_prefix,
    resolve_device,
    secondary_rank,
    seed_everything,
    torch_threads,
)

COMMON = ("seed", "out", "device", "overwrite", "threads")
TRAINER_OPTIONS = ("devices", "num_nodes", "strategy", "precision")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, TimeoutError)
CONFIG_FILE = "config.yaml"
RESUME_OPTION = "resume"
RESUME_FREE = ("resume", "overwrite", "threads", "out", "config")  # options a resumed run may change (out: the folder itself, however spelt)


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out``; refuse one that already holds files unless ``overwrite`` is set."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"--out {out} already holds results; choose another folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _checkpoints(out: Path) -> list[Path]:
    """The resume checkpoints (``last.ckpt``) a training command left under ``out``."""
    from paperzoo.core.lightning import LAST_CHECKPOINT

    return sorted(out.rglob(LAST_CHECKPOINT)) if out.is_dir() else []


def _resumes(function: Callable) -> bool:
    """A training command (it takes the Lightning scale options) that names ``resume``; another
    command's ``resume`` is its own option, left to it."""
    parameters = inspect.signature(function).parameters
    return RESUME_OPTION in parameters and all(o in parameters for o in TRAINER_OPTIONS)


def _check_resume(out: Path, config_text: str) -> None:
    """Refuse ``--resume`` unless ``out`` holds an unfinished run of the same options."""
    import yaml

    saved_path = out / CONFIG_FILE
    if not out.is_dir() or not saved_path.is_file():
        raise FileNotFoundError(f"--resume: {saved_path} not found: --out must be the folder of the "
                                "interrupted run")
    if (out / METRICS_FILE).is_file():
        raise FileExistsError(f"--resume: {out} holds a finished run ({METRICS_FILE}); nothing to "
                              "resume (--overwrite starts it again)")
    if not _checkpoints(out):
        raise FileNotFoundError(f"--resume: {out} holds no checkpoint (checkpoints/.../last.ckpt): the "
                                "run saved none (it stopped before its first training epoch ended, or "
                                "its training saves none); start it again with --overwrite")
    saved = yaml.safe_load(saved_path.read_text()) or {}
    given = yaml.safe_load(config_text) or {}
    changed = sorted(k for k in set(saved) | set(given)
                     if k not in RESUME_FREE and saved.get(k) != given.get(k))
    if changed:
        shown = "; ".join(f"--{k}: {saved.get(k)!r} in the run, {given.get(k)!r} now" for k in changed[:4])
        raise ValueError(f"--resume: the options differ from {saved_path} ({shown}); resume with the "
                         "run's own options, or start a new --out")


def _trainer_options(function: Callable) -> tuple[str, ...]:
    """The Lightning scale options ``function`` names: all four or none."""
    named = tuple(o for o in TRAINER_OPTIONS if o in inspect.signature(function).parameters)
    if named and len(named) != len(TRAINER_OPTIONS):
        missing = sorted(set(TRAINER_OPTIONS) - set(named))
        raise TypeError(f"{function.__qualname__} names {list(named)} but not {missing}: "
                        f"a training command takes all of {', '.join(TRAINER_OPTIONS)}")
    return named


def _add_trainer_options(parser) -> None:
    parser.add_argument("--devices", type=int | str, default=1,
                        help="Lightning devices per node: a count, 'auto' or a list like '0,1'.")
    parser.add_argument("--num_nodes", type=int, default=1, help="Lightning nodes (machines).")
    parser.add_argument("--strategy", type=str, default="auto",
                        help="Lightning strategy: auto, ddp, fsdp, ... (the spawning ones, ddp_spawn and the like, are refused: they return only the weights)")
    parser.add_argument("--precision", type=str | None, default=None,
                        help="Lightning precision: 32-true, bf16-mixed, 16-mixed, ... (default: 32-true).")


def _command_parser(name: str, function: Callable, prog: str, default_out: str):
    from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

    doc = inspect.getdoc(function) or ""
    parser = ArgumentParser(prog=f"{prog} {name}", description=doc.split("\n\n")[0] or None,
                            exit_on_error=False, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below.")
    seed_help = ("Seed of every random generator." if "seed" in inspect.signature(function).parameters
                 else "Not used by this command (it draws nothing at random, or its seeds are its "
                      "own options below); only 0 is accepted.")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--out", type=str, default=f"{default_out}/{name}",
                        help="Folder for every output (config, metrics.json, tables, plots).")
    parser.add_argument("--device", type=Literal["auto", "cpu", "cuda"], default="auto",
                        help="Where tensors live: auto picks cuda when available.")
    parser.add_argument("--overwrite", action=ActionYesNo, default=False,
                        help="Allow writing into an --out folder that already holds results.")
    parser.add_argument("--threads", type=int, default=0,
                        help="Torch threads for this command (0: torch's default).")
    trainer_options = _trainer_options(function)
    if trainer_options:
        _add_trainer_options(parser)
    skip = set(COMMON) | set(trainer_options)
    if _resumes(function):
        parser.add_argument("--resume", action=ActionYesNo, default=False,
                            help="Continue the interrupted run in --out from its last checkpoint "
                                 "(the run's own options; see the package README).")
        skip.add(RESUME_OPTION)
    parser.add_function_arguments(function, skip=skip, fail_untyped=True)
    return parser


def build_parser(prog: str, commands: Mapping[str, Callable], description: str | None = None,
                 version: str | None = None):
    """The jsonargparse parser with one subcommand per entry of ``commands``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, default_env=False, exit_on_error=False)
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
    for name in ("seed", "overwrite", "threads"):
        if name in accepted:
            kwargs[name] = config[name]
    if "device" in accepted:
        kwargs["device"] = device
    return function(**kwargs)


def _command_device(function: Callable, requested: str) -> str:
    """The device a command runs on; ``cuda`` is refused for a command that cannot use it."""
    device = resolve_device(requested)
    if "device" not in inspect.signature(function).parameters:
        if requested == "cuda":
            raise ValueError("this command runs on the CPU only; --device cuda is not supported here "
                             "(use --device cpu or auto)")
        return "cpu"
    return device


def _check_seed(function: Callable, seed: int) -> None:
    """A ``--seed`` other than 0 is refused for a command that takes no ``seed``: it would be
    recorded in ``config.yaml`` without deciding anything."""
    if seed != 0 and "seed" not in inspect.signature(function).parameters:
        raise ValueError(f"--seed {seed}: this command takes no seed (it draws nothing at random, "
                         "or its seeds are its own options: see --help); leave --seed out")


def _one_line(error: BaseException) -> str:
    """jsonargparse's message, without the usage and the nested parser dump."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    message = lines[0]
    for line in lines[1:]:
        if line.startswith("- ") or "Given value" in line or "Expected" in line:
            message += " " + line.lstrip("- ")
            break
    return message


def _parse(parser, argv: list[str], prog: str):
    """Parse ``argv``; an invalid option prints one line and gives ``None`` (exit status 2)."""
    from jsonargparse import ArgumentError

    try:
        return parser.parse_args(argv)
    except ArgumentError as error:
        if os.environ.get("PAPERZOO_DEBUG"):
            raise
        verb = next((a for a in argv if not a.startswith("-")), "")
        print(f"{prog}{' ' + verb if verb else ''}: error: {_one_line(error)}", file=sys.stderr)
        return None


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """``(mtime_ns, inode)`` of every file under ``out`` (relative paths), to tell afterwards
    which files a run wrote."""
    stamps = {}
    for path in out.rglob("*") if out.is_dir() else ():
        try:
            status = path.stat()
        except OSError:
            continue
        if path.is_file():
            stamps[str(path.relative_to(out))] = (status.st_mtime_ns, status.st_ino)
    return stamps


def _forget_failed_run(
    out: Path, created: bool, previous_config: str | None, before: dict[str, tuple[int, int]]
) -> None:
    """Tidy the config after a run that raised.

    A run that wrote its own ``metrics.json`` before raising (a validation whose pass check
    failed, a collapse found after the results were saved) keeps the ``config.yaml`` that
    produced them. Otherwise the config this run wrote goes. An ``--overwrite`` run that wrote
    nothing else gets the previous run's config back (it still describes every file in the
    folder); one that replaced or added other files (a checkpoint) leaves no config, since none
    describes that mixture. A fresh folder that the run left empty is removed, so the corrected
    command can use the same ``--out``.
    """
    after = _stamps(out)
    if METRICS_FILE in after and after[METRICS_FILE] != before.get(METRICS_FILE):
        return
    changed = {name for name, stamp in after.items() if before.get(name) != stamp}
    if previous_config is not None and changed <= {CONFIG_FILE}:
        atomic_write_text(out / CONFIG_FILE, previous_config)
        return
    (out / CONFIG_FILE).unlink(missing_ok=True)
    if created:
        try:
            out.rmdir()
        except OSError:  # the run wrote something before failing: keep it for inspection
            pass


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def _relaunched_scale(config: Mapping[str, Any]) -> bool:
    """Whether these trainer options make Lightning relaunch the command line (its subprocess
    launcher: ``ddp`` or ``auto`` over several devices or nodes; the spawn and fork strategies
    start processes of their own)."""
    if "devices" not in config:
        return False
    devices = config["devices"]
    if isinstance(devices, str):
        many = (_visible_gpus() > 1) if devices == "auto" else len([d for d in devices.split(",") if d.strip()]) > 1
    else:
        many = int(devices) > 1
    strategy = str(config.get("strategy", "auto"))
    spawned = "spawn" in strategy or "fork" in strategy or "notebook" in strategy
    return (many or int(config.get("num_nodes", 1)) > 1) and not spawned


def _run_secondary_rank(prog: str, name: str, function: Callable, sub_args, rank: str) -> int:
    """Run the command on a rank other than 0 with its outputs in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix=rank_scratch_prefix(rank, os.getppid())) as scratch:
        config = sub_args.as_dict()
        if config.get(RESUME_OPTION) and Path(sub_args.out).is_dir():
            # every rank reads the checkpoints (and earlier stages' outputs) rank 0 resumes from
            import shutil

            shutil.copytree(sub_args.out, scratch, dirs_exist_ok=True)
        seed_everything(int(sub_args.seed))
        try:
            with torch_threads(int(sub_args.threads)), device_request(sub_args.device):
                _call(function, config, Path(scratch), _command_device(function, sub_args.device))
        except USER_ERRORS as error:
            if os.environ.get("PAPERZOO_DEBUG"):
                raise
            print(f"{prog} {name} ({rank}): error: {error}", file=sys.stderr)
            return 2
    return 0


def run_cli(
    prog: str,
    commands: Mapping[str, Callable],
    argv: Sequence[str] | None = None,
    description: str | None = None,
    version: str | None = None,
) -> int:
    """Parse ``argv``, run the chosen command, return the exit status (0 on success)."""
    parser = build_parser(prog, commands, description, version)
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv), prog)
    if args is None:
        return 2
    name = args.command
    sub_args = args[name]
    function = commands[name]
    rank = secondary_rank()
    if rank is not None:
        return _run_secondary_rank(prog, name, function, sub_args, rank)
    if argv is not None and list(argv) != sys.argv[1:] and _relaunched_scale(sub_args.as_dict()):
        print(f"{prog} {name}: error: --strategy {sub_args.strategy} over several devices or nodes "
              "relaunches this program's command line once per device, and this command was "
              "called with arguments of its own: run it from the command line (or a "
              "subprocess), or call the package's functions from a script started with "
              "strategy='ddp' or under torchrun", file=sys.stderr)
        return 2
    out = Path(sub_args.out)
    created = not out.exists()
    config_written = False
    previous_config, before = None, {}
    resume = _resumes(function) and bool(sub_args.get(RESUME_OPTION))
    try:
        device = _command_device(function, sub_args.device)
        _check_seed(function, int(sub_args.seed))
        if all(option in sub_args for option in TRAINER_OPTIONS):
            from paperzoo.core.lightning import check_scale

            check_scale(*(sub_args[option] for option in TRAINER_OPTIONS))
        sub_parser = parser._subcommands_action._name_parser_map[name]
        config_text = sub_parser.dump(sub_args)
        if resume:
            if sub_args.overwrite:
                raise ValueError("--resume continues the run in --out and --overwrite starts it again: "
                                 "pass one of them")
            _check_resume(out, config_text)
        elif _resumes(function) and not sub_args.overwrite and _checkpoints(out) \
                and not (out / METRICS_FILE).is_file():
            raise FileExistsError(f"--out {out} holds an interrupted run ({_checkpoints(out)[0]}): pass "
                                  "--resume to continue it, --overwrite to start again, or choose "
                                  "another folder")
        out = prepare_out_dir(out, bool(sub_args.overwrite) or resume)
        if (out / CONFIG_FILE).is_file():
            previous_config = (out / CONFIG_FILE).read_text()
        before = _stamps(out)
        seed_everything(int(sub_args.seed))
        if not resume:
            atomic_write_text(out / CONFIG_FILE, config_text)
        config_written = True
        started = time.perf_counter()
        with torch_threads(int(sub_args.threads)), device_request(sub_args.device):
            result = _call(function, sub_args.as_dict(), out, device)
        elapsed = time.perf_counter() - started
    except BaseException as error:
        if config_written:
            after = _stamps(out)
            saved = [p for p in _checkpoints(out)
                     if after.get(str(p.relative_to(out))) != before.get(str(p.relative_to(out)))]
            if resume or saved:
                # the config describes the checkpoints: keep it, so that --resume can continue
                if saved:
                    print(f"{prog} {name}: stopped after saving {saved[-1]}; the same command with "
                          "--resume continues it", file=sys.stderr)
            else:
                _forget_failed_run(out, created, previous_config, before)
        if not isinstance(error, USER_ERRORS) or os.environ.get("PAPERZOO_DEBUG"):
            raise
        print(f"{prog} {name}: error: {error}", file=sys.stderr)
        return 2
    if isinstance(result, Mapping):
        shown = {k: v for k, v in result.items() if isinstance(v, int | float)}
        if shown:
            print(json.dumps(shown, indent=1, sort_keys=True))
    if not resume:
        _report_kept_files(prog, name, out, before)
    print(f"{prog} {name}: done in {elapsed:.1f} s, outputs in {out}")
    return 0


def _report_kept_files(prog: str, name: str, out: Path, before: dict[str, tuple[int, int]]) -> None:
    """After an ``--overwrite`` run, names the files of the earlier run that this one did not
    write (they are kept, not deleted: a verb may reuse them, e.g. a cached zoo), so that a
    stale plot or table is not taken for this run's."""
    if not before:
        return
    after = _stamps(out)
    kept = sorted(path for path, stamp in before.items() if after.get(path) == stamp)
    if kept:
        shown = ", ".join(kept[:5]) + (f", ... ({len(kept) - 5} more)" if len(kept) > 5 else "")
        print(f"{prog} {name}: note: {len(kept)} file(s) in {out} were not written by this run "
              f"(kept from an earlier one): {shown}", file=sys.stderr)
