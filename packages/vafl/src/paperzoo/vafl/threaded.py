"""The threaded runtime (spec section 3): one OS thread per client, a server thread, an upload
queue and a reply queue per client; compute times are real sleeps."""

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


class ThreadedRuntime:
    """Real concurrency: one OS thread per client, one server thread, an upload queue and a reply
    queue per client; compute times are real sleeps of ``delays_ms`` (a delay spec in ms).

    ``synchronous=True`` is threaded synchronous VFL (the server hands every client the same batch
    and waits for all uploads each round). ``dropout`` windows are in seconds, or in server
    iterations with ``dropout_clock="iterations"`` (independent of machine load). Evaluation runs every ``eval_every_s`` seconds under the
    per-party locks. Shutdown is clean: clients finish their pending message, the server answers
    every upload it received, every thread is joined.
    """

    name = "threads"

    def __init__(self, delays_ms: str = "exp:1,2,4,8", duration_s: float = 5.0,
                 dropout: Mapping[int, Sequence[Sequence[float]]] | None = None, seed: int = 0,
                 budget: int | None = None, synchronous: bool = False, eval_every_s: float = 0.5,
                 target_accuracy: float | None = None, dropout_clock: str = "seconds") -> None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        if budget is not None:
            check_budget(budget)
        self.delays_ms, self.duration_s, self.dropout, self.seed = delays_ms, duration_s, dropout, seed
        self.budget, self.synchronous, self.eval_every_s = budget, synchronous, eval_every_s
        self.target_accuracy = target_accuracy
        if dropout_clock not in ("seconds", "iterations"):
            raise ValueError(f"dropout_clock must be 'seconds' or 'iterations', got {dropout_clock!r}")
        self.dropout_clock = dropout_clock
        self.threads: list[threading.Thread] = []
        self.arrivals: list[tuple[float, int]] = []

    def run(self, federation: Federation) -> RunHistory:
        clients, server = federation.clients, federation.server
        num = len(clients)
        spec = DelaySpec.parse(self.delays_ms, num)
        horizon = self.duration_s if self.dropout_clock == "seconds" else (self.budget or math.inf)
        schedule = DropoutSchedule(self.dropout, num, horizon=horizon)
        history = RunHistory("threads-sync" if self.synchronous else self.name)
        if not server.initialised:
            federation.initialise()
        history.record(0, 0.0, federation.evaluate())
        uploads: queue.Queue = queue.Queue()
        replies = [queue.Queue() for _ in range(num)]
        requests = [queue.Queue() for _ in range(num)]
        locks = [threading.Lock() for _ in range(num)]
        server_lock = threading.Lock()
        stop_clients, stop_server = threading.Event(), threading.Event()
        errors: list[BaseException] = []
        start = time.perf_counter()
        self.arrivals = []

        def elapsed() -> float:
            return time.perf_counter() - start

        def clock() -> float:  # the time the drop-out windows are written in
            return elapsed() if self.dropout_clock == "seconds" else float(server.iteration)

        def client_loop(m: int) -> None:
            rng = np.random.default_rng([self.seed, m])
            try:
                # synchronous clients leave only on the server's end-of-run message
                while self.synchronous or not stop_clients.is_set():
                    indices = None
                    if self.synchronous:
                        try:
                            indices = requests[m].get(timeout=0.05)
                        except queue.Empty:
                            continue
                        if indices is None:
                            break
                    elif schedule.offline(m, clock()):
                        time.sleep(0.002)
                        continue
                    time.sleep(spec.draw(m, rng) / 1000.0)
                    with locks[m]:
                        upload = clients[m].step(indices=indices, sent_time=elapsed())
                    uploads.put(upload)
                    reply = replies[m].get()
                    with locks[m]:
                        clients[m].apply(reply)
            except BaseException as error:  # surfaced in the caller
                errors.append(error)
                stop_clients.set()

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
                        while len(received) < num:
                            if errors:
                                return
                            try:
                                received.append(uploads.get(timeout=0.05))
                            except queue.Empty:
                                continue
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
                        with server_lock:
                            answer = server.handle(upload)
                        self.arrivals.append((clock(), upload.client))
                        replies[answer.client].put(answer)
                    if self.budget is not None and server.iteration >= self.budget:
                        stop_clients.set()
            except BaseException as error:
                errors.append(error)
                stop_clients.set()
                for reply_queue in replies:
                    reply_queue.put(None)

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
            if elapsed() >= next_eval:
                next_eval += self.eval_every_s
                metrics = self._evaluate_locked(federation, locks, server_lock)
                history.record(server.iteration, elapsed(), metrics)
                if self.target_accuracy is not None and metrics["accuracy"] >= self.target_accuracy:
                    break
        stop_clients.set()
        for thread in self.threads:
            thread.join(timeout=30)
        stop_server.set()
        server_thread.join(timeout=30)
        self.threads.append(server_thread)
        if errors:
            raise errors[0]
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"threads still running after shutdown: {alive}")
        pending = [c.client_id for c in clients if c._pending]
        if pending:
            raise RuntimeError(f"clients {pending} still wait for replies after shutdown (lost replies)")
        duration = elapsed()
        history.record(server.iteration, duration, federation.evaluate())
        return history.finish(federation, duration)

    @staticmethod
    def _evaluate_locked(federation: Federation, locks, server_lock) -> dict[str, float]:
        for lock in locks:
            lock.acquire()
        server_lock.acquire()
        try:
            return federation.evaluate()
        finally:
            server_lock.release()
            for lock in locks:
                lock.release()
