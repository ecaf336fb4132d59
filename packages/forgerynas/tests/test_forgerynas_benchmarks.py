"""benchmarks/partial_channels.py: the committed record is never overwritten by accident, and a
measuring process that hangs is stopped."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "partial_channels.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_existing_out_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "record.json"
    out.write_text("{}\n")
    done = _run("--out", str(out))
    assert done.returncode != 0 and "pass --overwrite" in done.stderr
    assert out.read_text() == "{}\n"
    # the default --out is the committed record: refused the same way
    done = _run()
    assert done.returncode != 0 and "partial_channels.json exists" in done.stderr


def test_child_timeout_stops_the_run_and_writes_nothing(tmp_path):
    out = tmp_path / "record.json"
    small = ["--C", "4", "--layers", "2", "--steps", "2", "--size", "16", "--batch", "4"]
    done = _run(*small, "--Ks", "1,2", "--child_timeout_s", "0.01", "--out", str(out))
    assert done.returncode != 0 and "child_timeout_s" in done.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
