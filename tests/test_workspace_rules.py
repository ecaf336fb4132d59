"""Workspace rules that span packages (foundation design, section 6)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
METHOD_DIRS = sorted(p for p in (ROOT / "packages").glob("*") if (p / "pyproject.toml").is_file())
MEMBER_DIRS = [ROOT / "shared", *METHOD_DIRS]
SLUGS = [p.name for p in METHOD_DIRS]
IMPORT_BUDGET_S = 3.0


def _pyproject(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())


def _ids(paths):
    return [p.name for p in paths]


def test_root_is_a_virtual_workspace_with_every_member():
    root = _pyproject(ROOT)
    assert root["tool"]["uv"]["package"] is False
    assert root["tool"]["uv"]["workspace"]["members"] == ["shared", "packages/*"]
    assert any(c.startswith("torch==") for c in root["tool"]["uv"]["constraint-dependencies"])
    names = {Requirement(r).name for r in root["project"]["dependencies"]}
    expected = {"paperzoo-core", *(f"paperzoo-{s}" for s in SLUGS)}
    assert names == expected, f"root dependencies {sorted(names)} != members {sorted(expected)}"
    assert (ROOT / "uv.lock").is_file()
    assert (ROOT / ".python-version").read_text().strip() == "3.11"


@pytest.mark.parametrize("member", MEMBER_DIRS, ids=_ids(MEMBER_DIRS))
def test_member_has_build_system_and_module_name(member):
    data = _pyproject(member)
    assert data.get("build-system", {}).get("build-backend") == "uv_build", f"{member} lacks [build-system]"
    module = data["tool"]["uv"]["build-backend"]["module-name"]
    slug = "core" if member.name == "shared" else member.name
    assert module == f"paperzoo.{slug}"
    assert (member / "src" / "paperzoo" / slug / "__init__.py").is_file()


@pytest.mark.parametrize("member", METHOD_DIRS, ids=_ids(METHOD_DIRS))
def test_method_has_console_script_entry_point_and_versioned_core(member):
    data = _pyproject(member)
    slug = member.name
    project = data["project"]
    assert project["name"] == f"paperzoo-{slug}"
    assert project["scripts"].get(f"paperzoo-{slug}") == f"paperzoo.{slug}.cli:main"
    assert project["entry-points"]["paperzoo.methods"].get(slug) == f"paperzoo.{slug}.cli:main"
    cores = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "paperzoo-core"]
    assert len(cores) == 1, f"{slug} must depend on paperzoo-core exactly once"
    spec = str(cores[0].specifier)
    assert re.search(r">=0\.\d+", spec) and re.search(r"<0\.\d+", spec), f"{slug}: unversioned core ({spec!r})"
    assert data["tool"]["uv"]["sources"]["paperzoo-core"] == {"workspace": True}
    for name in ("README.md", "tests", "benchmarks"):
        assert (member / name).exists(), f"packages/{slug} lacks {name}"


def test_no_namespace_init_anywhere():
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.glob("**/src/paperzoo/__init__.py")]
    assert offenders == []


def _imports(path: Path) -> set[str]:
    found = set()
    for match in re.finditer(r"^\s*(?:from|import)\s+paperzoo\.(\w+)|^\s*from\s+paperzoo\s+import\s+(\w+)",
                             path.read_text(), flags=re.M):
        found.add(match.group(1) or match.group(2))
    return found


@pytest.mark.parametrize("member", MEMBER_DIRS, ids=_ids(MEMBER_DIRS))
def test_no_cross_method_imports(member):
    slug = "core" if member.name == "shared" else member.name
    allowed = {"core", slug}
    for path in (member / "src").rglob("*.py"):
        bad = _imports(path) - allowed
        assert not bad, f"{path.relative_to(ROOT)} imports other paperzoo packages: {sorted(bad)}"


@pytest.mark.parametrize("slug", ["core", *SLUGS])
def test_import_is_light(slug):
    code = (f"import sys, time; t = time.perf_counter(); import paperzoo.{slug}; "
            "print(time.perf_counter() - t); print('lightning' in sys.modules)")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False", f"import paperzoo.{slug} loads Lightning"
    assert float(out[0]) < IMPORT_BUDGET_S, f"import paperzoo.{slug} took {out[0]} s"
    assert time.perf_counter() - started < 3 * IMPORT_BUDGET_S


_OFFLINE_PRESETS = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("network blocked by the offline test")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = refuse
import importlib
model = importlib.import_module(f"paperzoo.{sys.argv[1]}.model")
extra = {"in_dims": [3, 3], "classes": 2} if sys.argv[1] == "vafl" else {}
for name in model.list_models():
    if "tiny" not in name and "paper" not in name:
        continue
    try:
        net = model.create_model(name, **extra)
    except ValueError as error:  # a preset that needs the user's weights file says so
        print(name, "refused:", error)
        continue
    print(name, "built", sum(p.numel() for p in net.parameters()))
"""


@pytest.mark.parametrize("slug", SLUGS)
def test_presets_build_offline(slug):
    """Every `tiny` and every paper-sized (`paper`, `*_paper`) preset builds with the network blocked: no weights are
    downloaded at run time (a pretrained backbone needs a local file the user gives)."""
    done = subprocess.run([sys.executable, "-c", _OFFLINE_PRESETS, slug], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{slug}: {done.stderr[-2000:]}"
    lines = done.stdout.splitlines()
    assert any(" built " in line for line in lines), f"{slug}: no preset built: {lines}"
    for line in lines:
        if " refused: " in line:
            assert "weights" in line, f"{slug}: {line}"


def test_makefile_targets_and_ci_entry():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("help", "setup", "demo", "test", "lint", "build", "wheel-smoke", "ci"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile lacks {target}"
    assert "UV_PYTHON_DOWNLOADS := never" in makefile
    assert "make ci" in (ROOT / ".ci" / "run").read_text()


# STYLE.md, "The method package": the rooms every method has, and which may load Lightning.
STYLE_FILES = ("__init__.py", "model.py", "data.py", "module.py", "pipeline.py", "validation.py",
               "commands.py", "cli.py")
LIGHTNING_ROOMS = {"module.py", "callbacks.py", "data.py", "pipeline.py", "validation.py"}
_LIGHTNING_IMPORT = re.compile(r"^\s*(?:import\s+lightning|from\s+lightning[\s.]|import\s+pytorch_lightning|"
                               r"from\s+pytorch_lightning)", flags=re.M)


def _source(slug: str) -> Path:
    return ROOT / "packages" / slug / "src" / "paperzoo" / slug


@pytest.mark.parametrize("slug", SLUGS)
def test_method_has_the_style_files(slug):
    missing = [name for name in STYLE_FILES if not (_source(slug) / name).is_file()]
    assert not missing, f"packages/{slug} lacks STYLE.md's files: {missing}"
    for name in ("configs", "README.md"):
        assert (ROOT / "packages" / slug / name).exists(), f"packages/{slug} lacks {name}"


def _plain_modules(slug: str) -> list[str]:
    return sorted(p.stem for p in _source(slug).glob("*.py")
                  if p.name not in LIGHTNING_ROOMS and p.name != "__init__.py")


@pytest.mark.parametrize("slug", SLUGS)
def test_plain_torch_parts_do_not_import_lightning(slug):
    """model.py and every idea/plot/command module stay free of Lightning, also transitively."""
    for name in _plain_modules(slug):
        text = (_source(slug) / f"{name}.py").read_text()
        assert not _LIGHTNING_IMPORT.search(text), f"packages/{slug}/{name}.py imports Lightning"
    modules = [f"paperzoo.{slug}.{name}" for name in _plain_modules(slug)]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'lightning' in sys.modules:\n"
            "        print(name); break\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not out.strip(), f"importing {out.strip()} loads Lightning"


_HELP_PROBE = """
import contextlib, io, json, re, sys, time
started = time.perf_counter()
from paperzoo.{slug}.cli import main
def run(argv):
    buffer = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        try:
            main(argv)
        except SystemExit:
            pass
    return buffer.getvalue(), time.perf_counter() - t
text, seconds = run(["--help"])
times = {{"--help": time.perf_counter() - started}}
verbs = re.search(r"\\{{([\\w,-]+)\\}}", text).group(1).split(",")
for verb in verbs:
    _, times[verb] = run([verb, "--help"])
print(json.dumps({{"verbs": verbs, "times": times,
                  "torch": "torch" in sys.modules, "lightning": "lightning" in sys.modules}}))
"""


@pytest.mark.parametrize("slug", SLUGS)
def test_cli_help_of_every_verb_loads_no_torch(slug):
    """``paperzoo-<slug> <verb> --help`` is built from signatures alone: no torch, no Lightning."""
    import json

    out = subprocess.run([sys.executable, "-c", _HELP_PROBE.format(slug=slug)], capture_output=True,
                         text=True, check=True).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert {"demo", "validate"} <= set(probe["verbs"]), f"{slug} lacks demo/validate: {probe['verbs']}"
    assert not probe["torch"], f"paperzoo-{slug} --help (or a verb's --help) imports torch"
    assert not probe["lightning"], f"paperzoo-{slug} --help imports Lightning"


@pytest.mark.parametrize("slug", SLUGS)
def test_every_training_verb_can_resume(slug):
    """A verb that trains through Lightning (it names the scale options) also names ``resume``,
    so ``--resume`` continues any interrupted training, in every package."""
    import ast

    source = ROOT / "packages" / slug / "src" / "paperzoo" / slug / "commands.py"
    tree = ast.parse(source.read_text())
    for function in tree.body:
        if not isinstance(function, ast.FunctionDef) or function.name.startswith("_"):
            continue
        names = {a.arg for a in function.args.args + function.args.kwonlyargs}
        if "devices" in names:
            assert "resume" in names, f"{slug} {function.name} trains (--devices) but takes no resume"
