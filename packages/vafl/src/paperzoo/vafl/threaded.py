"""The threaded runtime (spec section 3): one OS thread per client, a server thread, an upload
queue and a reply queue per client; compute times are real sleeps.

Fault policy: every wait has a timeout (uploads, replies, locks, joins; evaluation gives up on the
server lock after ``client_timeout_s + 1`` s with a ``RuntimeError``). A client that misses its
deadline (``client_timeout_s`` of its own work: computing, uploading, applying a reply) or raises
is marked lost, with the reason and the server iteration (``RunHistory.clients_lost``). Its
embedding rows stay at their last value (the paper's stale reads), its last test embeddings
stand in for it at evaluation, and training goes on with the others; the run ends normally with
its full history. ``on_client_lost="stop"`` ends the run at the first loss instead, still
returning everything measured so far. Synchronous rounds need every party, so there a loss
always ends the run.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from paperzoo.vafl.delays import DelaySpec, DropoutSchedule, check_budget
from paperzoo.vafl.federation import Federation, RunHistory

LOST_POLICIES = ("continue", "stop")


class ThreadedRuntime:
    """Real concurrency: one OS thread per client, one server thread, an upload queue and a reply
    queue per client; compute times are real sleeps of ``delays_ms`` (a delay spec in ms).

    ``synchronous=True`` is threaded synchronous VFL (the server hands every client the same batch
    and waits for all uploads each round). ``dropout`` windows are in seconds, or in server
    iterations with ``dropout_clock="iterations"`` (independent of machine load). Evaluation runs
    every ``eval_every_s`` seconds, taking each party's lock in turn with a timeout. Shutdown:
    clients finish their pending message, the server answers every upload it received, every
    thread is joined with a timeout. ``client_timeout_s`` and ``on_client_lost`` set the fault
    policy (module docstring).
    """

    name = "threads"

    def __init__(self, delays_ms: str = "exp:1,2,4,8", duration_s: float = 5.0,
                 dropout: Mapping[int, Sequence[Sequence[float]]] | None = None, seed: int = 0,
                 budget: int | None = None, synchronous: bool = False, eval_every_s: float = 0.5,
                 target_accuracy: float | None = None, dropout_clock: str = "seconds",
                 client_timeout_s: float = 5.0, on_client_lost: str = "continue") -> None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        if budget is not None:
            check_budget(budget)
        if dropout_clock not in ("seconds", "iterations"):
            raise ValueError(f"dropout_clock must be 'seconds' or 'iterations', got {dropout_clock!r}")
        if not (math.isfinite(client_timeout_s) and client_timeout_s > 0):
            raise ValueError(f"client_timeout_s must be positive, got {client_timeout_s}")
        if on_client_lost not in LOST_POLICIES:
            raise ValueError(f"on_client_lost must be one of {', '.join(LOST_POLICIES)}, got {on_client_lost!r}")
        if not eval_every_s > 0:
            raise ValueError(f"eval_every_s must be positive, got {eval_every_s}")
        self.delays_ms, self.duration_s, self.dropout, self.seed = delays_ms, duration_s, dropout, seed
        self.budget, self.synchronous, self.eval_every_s = budget, synchronous, eval_every_s
        self.target_accuracy, self.dropout_clock = target_accuracy, dropout_clock
        self.client_timeout_s, self.on_client_lost = float(client_timeout_s), on_client_lost
        self.threads: list[threading.Thread] = []
        self.arrivals: list[tuple[float, int]] = []
        self.clients_lost: list[dict] = []
        self.threads_left_running: list[str] = []
        self.stopped_by = ""

    def _compute(self, client: int, seconds: float, stop: threading.Event) -> None:
        """A client's compute time: a sleep that ends early when the run stops."""
        stop.wait(seconds)

    def run(self, federation: Federation) -> RunHistory:
        clients, server = federation.clients, federation.server
        num = len(clients)
        spec = DelaySpec.parse(self.delays_ms, num)
        horizon = self.duration_s if self.dropout_clock == "seconds" else (self.budget or math.inf)
        schedule = DropoutSchedule(self.dropout, num, horizon=horizon)
        history = RunHistory("threads-sync" if self.synchronous else self.name)
        if not server.initialised:
            federation.initialise()
        test_releases = [c.release("test") for c in clients]  # a lost client's last test embeddings
        history.record(0, 0.0, federation.evaluate(releases=test_releases))
        uploads: queue.Queue = queue.Queue()
        replies = [queue.Queue() for _ in range(num)]
        requests = [queue.Queue() for _ in range(num)]
        locks = [threading.Lock() for _ in range(num)]
        server_lock = threading.Lock()
        stop_clients, stop_server = threading.Event(), threading.Event()
        server_errors: list[BaseException] = []
        lost: dict[int, dict] = {}
        lost_lock = threading.Lock()
        busy_since: list[float | None] = [None] * num  # when a client began work it owes
        timeout = self.client_timeout_s
        start = time.perf_counter()
        self.arrivals, self.clients_lost, self.threads_left_running, self.stopped_by = [], [], [], ""

        def elapsed() -> float:
            return time.perf_counter() - start

        def clock() -> float:  # the time the drop-out windows are written in
            return elapsed() if self.dropout_clock == "seconds" else float(server.iteration)

        def mark_lost(m: int, reason: str) -> None:
            with lost_lock:
                if m in lost:
                    return
                lost[m] = {"client": m, "reason": reason, "iteration": server.iteration, "time": elapsed()}
                everyone = len(lost) == num
            if self.on_client_lost == "stop" or self.synchronous or everyone:
                self.stopped_by = self.stopped_by or ("every client lost" if everyone else f"client {m} lost")
                stop_clients.set()

        def locked(m: int, action, *args, **kwargs) -> tuple[bool, object]:
            """``(True, action(...))`` under client m's lock; ``(False, None)`` (and m lost) if the
            lock is not free within the deadline."""
            if not locks[m].acquire(timeout=timeout):
                mark_lost(m, f"held its lock past the {timeout:g} s deadline")
                return False, None
            try:
                return True, action(*args, **kwargs)
            finally:
                locks[m].release()

        def wait_reply(m: int):
            deadline = time.perf_counter() + max(timeout, 1.0) + (self.duration_s if self.synchronous else 0.0)
            while time.perf_counter() < deadline:
                if m in lost or (self.synchronous and lost):  # a lost party ends a synchronous run
                    return None
                try:
                    return replies[m].get(timeout=0.02)
                except queue.Empty:
                    if server_errors:
                        return None
            mark_lost(m, f"no reply from the server within {max(timeout, 1.0):g} s")
            return None

        def client_loop(m: int) -> None:
            rng = np.random.default_rng([self.seed, m])
            try:
                # synchronous clients leave only on the server's end-of-run message
                while (self.synchronous or not stop_clients.is_set()) and m not in lost:
                    indices = None
                    if self.synchronous:
                        try:
                            indices = requests[m].get(timeout=0.05)
                        except queue.Empty:
                            continue
                        if indices is None:
                            break
                    elif schedule.offline(m, clock()):
                        busy_since[m] = None  # an announced outage, not a fault
                        stop_clients.wait(0.002)
                        continue
                    busy_since[m] = time.perf_counter()
                    self._compute(m, spec.draw(m, rng) / 1000.0, stop_clients)
                    done, upload = locked(m, clients[m].step, indices=indices, sent_time=elapsed())
                    if not done or m in lost:
                        return
                    busy_since[m] = None
                    uploads.put(upload)
                    reply = wait_reply(m)
                    if reply is None:
                        return
                    busy_since[m] = time.perf_counter()
                    done, _ = locked(m, clients[m].apply, reply)
                    if not done:
                        return
                    busy_since[m] = None
            except BaseException as error:  # the client is lost, the run goes on
                mark_lost(m, f"raised {type(error).__name__}: {error}")
            finally:
                busy_since[m] = None

        def server_loop() -> None:
            try:
                while True:
                    if self.synchronous:
                        if stop_clients.is_set():
                            # only this thread writes the request queues, so the end-of-run
                            # message always follows the last round's batch
                            for request in requests:
                                request.put(None)
                            break
                        indices = torch.randperm(federation.data.num_train, generator=batch_generator)
                        indices = indices[: federation.config.batch_size]
                        for request in requests:
                            request.put(indices)
                        received = []
                        while len(received) < num and not lost:
                            try:
                                received.append(uploads.get(timeout=0.02))
                            except queue.Empty:
                                continue
                        if lost:
                            continue  # a round needs every party: the loss has stopped the run
                        received.sort(key=lambda u: u.client)
                        with server_lock:
                            answers = server.handle_round(received)
                        for answer in answers:
                            replies[answer.client].put(answer)
                    else:
                        try:
                            upload = uploads.get(timeout=0.02)
                        except queue.Empty:
                            if stop_server.is_set():
                                break
                            continue
                        if upload.client in lost:
                            continue  # a lost client's late upload: its rows stay as they were
                        with server_lock:
                            answer = server.handle(upload)
                        self.arrivals.append((clock(), upload.client))
                        replies[answer.client].put(answer)
                    if self.budget is not None and server.iteration >= self.budget:
                        self.stopped_by = self.stopped_by or "budget"
                        stop_clients.set()
            except BaseException as error:
                server_errors.append(error)
                stop_clients.set()

        def check_deadlines() -> None:
            now = time.perf_counter()
            for m in range(num):
                since = busy_since[m]
                if m not in lost and since is not None and now - since > timeout:
                    mark_lost(m, f"missed its {timeout:g} s deadline")

        def evaluate() -> dict[str, float]:
            for m in range(num):
                if m not in lost:
                    done, release = locked(m, clients[m].release, "test")
                    if done:
                        test_releases[m] = release
            # the server holds its lock only while it handles one upload (or one round)
            if not server_lock.acquire(timeout=timeout + 1.0):
                stop_clients.set()
                stop_server.set()
                raise TimeoutError(
                    f"evaluation waited {timeout + 1.0:g} s for the server lock: the server thread "
                    f"held it that long handling an upload (stuck, or slower than the {timeout:g} s "
                    "client deadline); the run is stopped")
            try:
                return federation.evaluate(releases=test_releases)
            finally:
                server_lock.release()

        batch_generator = torch.Generator().manual_seed(self.seed + 1)
        self.threads = [threading.Thread(target=client_loop, args=(m,), name=f"vafl-client-{m}", daemon=True)
                        for m in range(num)]
        server_thread = threading.Thread(target=server_loop, name="vafl-server", daemon=True)
        server_thread.start()
        for thread in self.threads:
            thread.start()
        next_eval = self.eval_every_s
        while elapsed() < self.duration_s and not stop_clients.is_set():
            time.sleep(min(0.01, max(0.0, next_eval - elapsed())))
            check_deadlines()
            if elapsed() >= next_eval:
                next_eval += self.eval_every_s
                metrics = evaluate()
                history.record(server.iteration, elapsed(), metrics)
                if self.target_accuracy is not None and metrics["accuracy"] >= self.target_accuracy:
                    self.stopped_by = self.stopped_by or "target accuracy"
                    break
        self.stopped_by = self.stopped_by or "duration"
        stop_clients.set()
        for m, thread in enumerate(self.threads):
            thread.join(timeout=timeout + 1.0)
            if thread.is_alive():
                mark_lost(m, f"missed its deadline: did not stop within {timeout + 1.0:g} s of the end of the run")
        stop_server.set()
        server_thread.join(timeout=timeout + 1.0)
        self.threads.append(server_thread)
        if server_errors:
            raise server_errors[0]  # the server is this process: a bug, not a lost party
        self.threads_left_running = [t.name for t in self.threads if t.is_alive()]
        if server_thread.is_alive():
            raise RuntimeError(f"the server thread did not stop within {timeout + 1.0:g} s")
        pending = [c.client_id for c in clients if c._pending and c.client_id not in lost]
        if pending and not (self.synchronous and lost):
            raise RuntimeError(f"clients {pending} still wait for replies after shutdown (lost replies)")
        duration = elapsed()
        history.record(server.iteration, duration, evaluate())
        history.finish(federation, duration)
        self.clients_lost = sorted(lost.values(), key=lambda record: record["iteration"])
        history.clients_lost = list(self.clients_lost)
        history.stopped_by = self.stopped_by
        return history
