"""Module-level jobs for the runner tests (a spawned worker imports them by name), and a script
that runs one job on a worker and then waits, for the test that kills the scheduling process."""

import random
import sys
import time


def seeded_draws(seed: int, n: int) -> list[float]:
    """A job that draws only from its own seed: the same numbers in any process or order."""
    generator = random.Random(seed)
    return [generator.random() for _ in range(n)]


def started_at(delay: float) -> float:
    """The wall clock at the job's start, after which it works ``delay`` seconds."""
    started = time.time()
    time.sleep(delay)
    return started


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":  # python job_functions.py: print the worker's pid, then wait
    from paperzoo.core.jobs import JobRunner

    runner = JobRunner(workers=2, timeout_s=120)
    runner.submit("long", time.sleep, 120)
    deadline = time.time() + 60
    while "long" not in runner._pids and time.time() < deadline:
        runner._collect()
        time.sleep(0.05)
    print(runner._pids.get("long", -1), flush=True)
    sys.stdout.close()
    time.sleep(120)
