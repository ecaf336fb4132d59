"""The threaded runtime: real threads, a client offline for 40 % of the run, clean shutdown."""

import threading

from paperzoo.vafl.experiments import threaded_experiment
from paperzoo.vafl.runtime import FederationConfig, ThreadedRuntime, build_federation

TINY = FederationConfig(preset="tiny", embed_dim=4, hidden=8, head_hidden=8)


def test_threads_progress_with_a_client_offline_and_stop_cleanly(cancer_data):
    before = threading.active_count()
    result = threaded_experiment(cancer_data, seed=0, duration_s=2.0, delays_ms="exp:1,2,4,8",
                                 offline_client=3, offline_fraction=0.4, config=TINY)
    history = result.threaded
    assert min(history.update_counts) > 0          # every client made progress
    assert result.updates_during_outage > 0        # training continued during the outage
    # the offline client sends nothing in the outage (at most the upload already in flight)
    assert result.offline_client_updates_during_outage <= 1
    assert threading.active_count() == before      # no thread left running
    assert history.final_accuracy > 0.8


def test_threaded_synchronous_rounds(cancer_data):
    federation = build_federation(cancer_data, TINY)
    runtime = ThreadedRuntime("const:1", 0.6, synchronous=True, eval_every_s=0.3)
    history = runtime.run(federation)
    counts = history.update_counts
    assert counts[0] > 0 and len(set(counts)) == 1
    assert not any(t.is_alive() for t in runtime.threads)
    assert all(not c._pending for c in federation.clients)
