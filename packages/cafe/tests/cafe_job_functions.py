"""A job function for the timeout test: a spawned worker imports it by name (the test puts this
folder on ``sys.path``, which spawned workers inherit)."""

import time

from paperzoo.cafe.pipeline import call_job as real_call_job

SLOW_BATCH = 20  # the run with this batch size hangs


def slow_call_job(job):
    """``call_job``, except that the run with ``batch_size == SLOW_BATCH`` hangs."""
    if job[1]["scenario"]["batch_size"] == SLOW_BATCH:
        time.sleep(300)
    return real_call_job(job)
