"""The threaded runtime: real threads, a client offline for 40 % of the run, clean shutdown.

Runs are measured in server updates, not seconds (``budget`` and ``dropout_clock="iterations"``),
so the checks hold however loaded the machine is; ``duration_s`` is only a generous cap."""

import threading

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.federation import build_federation
from paperzoo.vafl.threaded import ThreadedRuntime
from paperzoo.vafl.validation import threaded_experiment

TINY = FederationConfig(preset="tiny")
BUDGET = 800


def test_threads_progress_with_a_client_offline_and_stop_cleanly(cancer_data):
    before = threading.active_count()
    result = threaded_experiment(cancer_data, seed=0, duration_s=300.0, delays_ms="exp:1,2,4,8",
                                 offline_client=3, offline_fraction=0.4, config=TINY, budget=BUDGET,
                                 clock="iterations")
    history = result.threaded
    assert result.outage == (240.0, 560.0)          # server iterations 240-560 of 800
    assert history.iterations[-1] >= BUDGET         # stopped by the update budget, not the clock
    assert min(history.update_counts) > 0          # every client made progress
    assert result.updates_during_outage >= 320 - 4  # training continued during the outage
    # the offline client sends nothing in the outage (at most the upload already in flight)
    assert result.offline_client_updates_during_outage <= 1
    assert threading.active_count() == before      # no thread left running
    assert history.final_accuracy > 0.8


def test_threaded_synchronous_rounds(cancer_data):
    federation = build_federation(cancer_data, TINY)
    runtime = ThreadedRuntime("const:1", 300.0, synchronous=True, eval_every_s=0.3, budget=40)
    history = runtime.run(federation)
    counts = history.update_counts
    assert counts == [counts[0]] * 4 and counts[0] >= 40
    assert not any(t.is_alive() for t in runtime.threads)
    assert all(not c._pending for c in federation.clients)
