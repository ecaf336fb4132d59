"""A job function for the timeout test: a spawned worker imports it by name (the test puts this
folder on ``sys.path``, which spawned workers inherit). It imports no torch, so a worker starts
fast."""

import time

SLOW_SEED = 1  # this seed hangs


def slow_or_fake_seed(task, seed, config, work_dir, device="cpu"):
    """A stand-in for ``run_seed``: seed ``SLOW_SEED`` hangs, the others return a fixed result."""
    if seed == SLOW_SEED:
        time.sleep(300)
    arm = {"test_acc": 0.9, "kl_final": 0.1, "anchor_epochs": [2], "kl_curve": [0.2, 0.1]}
    return {"task": task, "seed": seed, "teacher_acc": 0.97, "teacher_val_acc": 0.97,
            "arms": {name: dict(arm) for name in config.arms}}
