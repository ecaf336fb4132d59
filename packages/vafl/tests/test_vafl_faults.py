"""The threaded runtime survives a client that hangs (holding its lock or not) or raises: the client
is marked lost with its reason and server iteration, its rows stay stale, the others train on,
and the run ends within a bound with its full history (issue: fault tolerance).

Runs are measured in server updates (``budget``) so the checks do not depend on machine load;
``duration_s`` is only a cap."""

import threading
import time

import pytest

from paperzoo.vafl.config import FederationConfig
from paperzoo.vafl.federation import build_federation
from paperzoo.vafl.threaded import ThreadedRuntime

TINY = FederationConfig(preset="tiny")
BUDGET, FAULTY, AFTER, TIMEOUT = 600, 1, 15, 2.0
BOUND_S = 240.0  # generous: the run itself takes a few seconds on an idle machine


def _runtime(**kwargs) -> ThreadedRuntime:
    return ThreadedRuntime("exp:1,1,1,1", 600.0, budget=BUDGET, eval_every_s=5.0, client_timeout_s=TIMEOUT,
                           **kwargs)


@pytest.fixture(scope="module")
def without_the_client(cancer_data):
    """The reference: the same run with the faulty client offline from the start."""
    runtime = ThreadedRuntime("exp:1,1,1,1", 600.0, dropout={FAULTY: [(0.0, float("inf"))]}, budget=BUDGET,
                              eval_every_s=5.0, dropout_clock="iterations")
    return runtime.run(build_federation(cancer_data, TINY))


def _after(calls: int, action):
    """A wrapper that does ``action`` from the ``calls``-th call on, the original before."""
    def wrap(original):
        count = {"n": 0}

        def wrapped(*args, **kwargs):
            count["n"] += 1
            if count["n"] > calls:
                action()
            return original(*args, **kwargs)
        return wrapped
    return wrap


def _raise():
    raise RuntimeError("injected client failure")


def _check(history, runtime, started, reference, reason):
    assert time.perf_counter() - started < BOUND_S
    assert [lost["client"] for lost in history.clients_lost] == [FAULTY]
    lost = history.clients_lost[0]
    assert reason in lost["reason"] and 0 < lost["iteration"] <= BUDGET + 4  # + uploads in flight at the end
    assert history.iterations[-1] >= BUDGET               # the others trained on to the budget
    assert history.update_counts[FAULTY] <= AFTER + 1      # its rows stayed at their last value
    assert min(c for m, c in enumerate(history.update_counts) if m != FAULTY) > 50
    assert len(history.accuracy) >= 2 and history.epsilon_record  # the full history is there
    assert abs(history.final_accuracy - reference.final_accuracy) <= 0.1


@pytest.mark.parametrize("where", ["holding its lock", "outside its lock"])
def test_a_hanging_client_is_marked_lost_and_the_run_ends(where, cancer_data, without_the_client):
    release = threading.Event()
    federation = build_federation(cancer_data, TINY)
    runtime = _runtime()
    client = federation.clients[FAULTY]
    if where == "holding its lock":  # step() runs under the client's lock
        client.step = _after(AFTER, lambda: release.wait(120))(client.step)
    else:  # the compute time runs outside it
        original = runtime._compute
        calls = {"n": 0}

        def compute(m, seconds, stop):
            if m == FAULTY:
                calls["n"] += 1
                if calls["n"] > AFTER:
                    release.wait(120)
            original(m, seconds, stop)
        runtime._compute = compute
    started = time.perf_counter()
    try:
        history = runtime.run(federation)
    finally:
        release.set()  # let the hung thread finish
    _check(history, runtime, started, without_the_client, "deadline")


def test_a_client_that_raises_is_marked_lost_and_the_run_ends(cancer_data, without_the_client):
    federation = build_federation(cancer_data, TINY)
    client = federation.clients[FAULTY]
    client.apply = _after(AFTER, _raise)(client.apply)
    runtime = _runtime()
    started = time.perf_counter()
    history = runtime.run(federation)
    _check(history, runtime, started, without_the_client, "raised RuntimeError: injected client failure")
    assert not any(t.is_alive() for t in runtime.threads)


def test_stop_policy_ends_the_run_at_the_loss_and_keeps_the_history(cancer_data):
    federation = build_federation(cancer_data, TINY)
    client = federation.clients[FAULTY]
    client.apply = _after(AFTER, _raise)(client.apply)
    runtime = _runtime(on_client_lost="stop")
    history = runtime.run(federation)
    assert history.stopped_by == f"client {FAULTY} lost"
    assert history.clients_lost[0]["client"] == FAULTY
    assert history.iterations[-1] < BUDGET and len(history.accuracy) >= 2
    assert history.update_counts[FAULTY] == AFTER + 1  # the upload whose reply raised


def test_evaluation_gives_up_on_a_stuck_server_with_a_clear_error(cancer_data):
    """Every wait has a timeout, evaluation's server lock included: a server stuck inside
    ``handle`` (which holds the lock) ends the run with an error naming the lock after
    ``client_timeout_s + 1`` s instead of blocking the main thread until the server returns."""
    release = threading.Event()
    federation = build_federation(cancer_data, TINY)
    federation.server.handle = _after(0, lambda: release.wait(30))(federation.server.handle)
    runtime = ThreadedRuntime("exp:1,1,1,1", 600.0, eval_every_s=0.2, client_timeout_s=0.5)
    started = time.perf_counter()
    try:
        with pytest.raises(TimeoutError, match=r"evaluation waited 1.5 s for the server lock"):
            runtime.run(federation)
        assert time.perf_counter() - started < 25
    finally:
        release.set()  # let the stuck server thread finish
        for thread in threading.enumerate():
            if thread.name.startswith("vafl-"):
                thread.join(timeout=10)
