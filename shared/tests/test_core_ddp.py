"""Scaling past one device: two CPU processes under Lightning's ``ddp`` strategy (gloo) train the
same weights as one process, because each rank takes its share of every global batch."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from paperzoo.core.checkpoint import load_state_dict, read_meta

SCRIPT = Path(__file__).with_name("ddp_train.py")


def _train(out: Path, devices: int, strategy: str) -> dict[str, torch.Tensor]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(SCRIPT), str(out), str(devices), strategy], check=True,
                   env=env, cwd=out.parent, timeout=300, capture_output=True)
    return load_state_dict(out)


def test_ddp_on_two_cpu_processes_equals_one_process(tmp_path):
    single = _train(tmp_path / "single.safetensors", 1, "auto")
    ddp = _train(tmp_path / "ddp.safetensors", 2, "ddp")
    meta = read_meta(tmp_path / "ddp.safetensors")
    assert meta["world_size"] == 2 and meta["strategy"] == "ddp"
    assert meta["steps"] == read_meta(tmp_path / "single.safetensors")["steps"] == 15
    assert single.keys() == ddp.keys()
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5, msg=f"{key} differs")


def test_ddp_through_the_cli_leaves_rank_zeros_results_alone(tmp_path):
    """Lightning's ddp reruns the command line for rank 1; the core runs that copy with a
    temporary --out, so the real --out holds rank 0's files only and the run succeeds."""
    scratch = tmp_path / "tmp"  # rank 1's temporary --out goes here, and must be gone after
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(scratch)}
    runs = {}
    for label, scale in (("single", []), ("ddp", ["--devices", "2", "--strategy", "ddp"])):
        done = subprocess.run([sys.executable, str(SCRIPT), "train", "--out", str(tmp_path / label), *scale],
                              env=env, cwd=tmp_path, timeout=300, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[label] = load_state_dict(tmp_path / label / "model.safetensors")
    assert (tmp_path / "ddp" / "rank.txt").read_text() == "0"
    assert read_meta(tmp_path / "ddp" / "model.safetensors")["world_size"] == 2
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "checkpoints", "config.yaml", "model.safetensors", "model.safetensors.json", "rank.txt"]
    _wait_until(lambda: not list(scratch.glob("paperzoo-*")))  # rank 1 may end a moment after rank 0
    for key, value in runs["single"].items():
        torch.testing.assert_close(runs["ddp"][key], value, rtol=1e-4, atol=1e-5, msg=f"{key} differs")


def test_ddp_resume_through_the_cli_equals_the_uninterrupted_run(tmp_path):
    """Two gloo processes, each drawing its own input noise: interrupted after 2 of 4 epochs and
    resumed, the weights equal the uninterrupted run's (every rank gets its own random state
    back; rank 1 reads the checkpoint from rank 0's --out)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(scratch)}
    common = ["--devices", "2", "--strategy", "ddp", "--epochs", "4", "--noise", "0.3"]

    def run(label, *extra):
        return subprocess.run([sys.executable, str(SCRIPT), "train", "--out", str(tmp_path / label), *common, *extra],
                              env=env, cwd=tmp_path, timeout=300, capture_output=True, text=True)

    assert run("straight").returncode == 0
    _wait_until(lambda: not list(scratch.glob("paperzoo-*")))
    stopped = run("cut", "--stop_after", "2")
    assert stopped.returncode != 0 and "--resume continues it" in stopped.stderr, stopped.stderr[-2000:]
    # rank 0's failure kills rank 1 (SIGKILL) and removes its temporary folder
    assert not list(scratch.glob("paperzoo-*"))
    resumed = run("cut", "--stop_after", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _wait_until(lambda: not list(scratch.glob("paperzoo-*")))
    straight = load_state_dict(tmp_path / "straight" / "model.safetensors")
    after = load_state_dict(tmp_path / "cut" / "model.safetensors")
    assert all(torch.equal(straight[k], after[k]) for k in straight)
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    per_rank = checkpoint["callbacks"]["ResumeCheckpoint"]["random_states_per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])


def _wait_until(condition, timeout_s: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s"
        time.sleep(0.2)



def test_a_failing_rank_zero_kills_the_ranks_it_launched(tmp_path, monkeypatch):
    """On GPUs (NCCL) a launched rank would wait in its next collective for the process group's
    30-minute timeout after rank 0 raised; gloo on the CPU notices the closed socket at once, so
    the callback is tested on a launcher holding a stand-in child process. Rank 0 then removes
    the temporary --out of the ranks it launched, and only theirs."""
    import tempfile

    from paperzoo.core.runtime import rank_scratch_prefix

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ours = tmp_path / (rank_scratch_prefix("LOCAL_RANK=1", os.getpid()) + "x1")
    others = tmp_path / (rank_scratch_prefix("LOCAL_RANK=1", os.getpid() + 1) + "x2")
    from types import SimpleNamespace

    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    from paperzoo.core.lightning import StopLaunchedRanksOnError

    for global_zero in (False, True):
        launcher = _SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        launcher.procs = [child]
        trainer = SimpleNamespace(is_global_zero=global_zero, strategy=SimpleNamespace(launcher=launcher))
        for folder in (ours, others):
            (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        try:
            StopLaunchedRanksOnError().on_exception(trainer, None, RuntimeError("rank 0 failed"))
            assert others.is_dir() and ours.is_dir() != global_zero
            if global_zero:
                assert child.wait(timeout=30) != 0  # killed
            else:
                with pytest.raises(subprocess.TimeoutExpired):  # only rank 0 stops the others
                    child.wait(timeout=1)
        finally:
            child.kill()
            child.wait()


def test_every_trainer_carries_the_callback():
    from paperzoo.core.lightning import StopLaunchedRanksOnError, make_trainer

    trainer = make_trainer(None, device="cpu", logger=False, progress_bar=False)
    assert any(isinstance(c, StopLaunchedRanksOnError) for c in trainer.callbacks)
