"""Runtimes that drive the VAFL protocol: a seeded discrete-event simulation with a compute-time
distribution per client, real threads (one per client, a server thread, queues), and the
synchronous VFL baseline (Chen et al. 2020, section 2; spec section 3).

In every asynchronous runtime each client runs its own loop on its own clock (draw a batch,
compute, upload, wait for its reply, apply it) and the server handles messages in arrival order.
Nothing waits for the other clients.
"""

from __future__ import annotations

import heapq
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from paperzoo.core.runtime import progress
from paperzoo.vafl.data import VerticalData
from paperzoo.vafl.model import VerticalModel, create_model
from paperzoo.vafl.privacy import EmbeddingBound, check_dp_sgd_parameters, check_privacy_parameters
from paperzoo.vafl.protocol import LOSSES, STEP_SIZES, VaflClient, VaflServer

DELAY_KINDS = ("exp", "const", "bounded")


# ------------------------------------------------------------------------------------ delays
@dataclass(frozen=True)
class DelaySpec:
    """Per-client compute-time distributions, parsed from ``"exp:1,2,4,8"`` (exponential with those
    means), ``"const:1,2,4,8"`` or ``"bounded:D"`` (uniform on ``[1, D]``, **[reconstructed]**
    reading of a bounded delay). One value applies to every client."""

    kind: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, spec: str, num_clients: int) -> DelaySpec:
        if not isinstance(spec, str) or ":" not in spec:
            raise ValueError(f"delay spec {spec!r} does not parse; expected e.g. 'exp:1,2,4,8', 'const:1', 'bounded:8'")
        kind, _, rest = spec.partition(":")
        kind = kind.strip()
        if kind not in DELAY_KINDS:
            raise ValueError(f"delay spec {spec!r}: unknown distribution {kind!r}; choose from {', '.join(DELAY_KINDS)}")
        try:
            values = tuple(float(v) for v in rest.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"delay spec {spec!r} does not parse: values must be numbers") from None
        if not values:
            raise ValueError(f"delay spec {spec!r} names no values")
        if any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError(f"delay spec {spec!r}: every mean/bound must be positive and finite")
        if kind == "bounded" and (len(values) != 1 or values[0] < 1):
            raise ValueError(f"delay spec {spec!r}: 'bounded:D' takes one bound D >= 1")
        if len(values) == 1:
            values = values * num_clients
        if len(values) != num_clients:
            raise ValueError(f"delay spec {spec!r} gives {len(values)} values for {num_clients} clients")
        return cls(kind, values)

    def draw(self, client: int, rng: np.random.Generator) -> float:
        value = self.values[client]
        if self.kind == "exp":
            return float(rng.exponential(value))
        if self.kind == "const":
            return value
        return float(rng.uniform(1.0, value))

    def means(self) -> list[float]:
        return [(1.0 + v) / 2 if self.kind == "bounded" else v for v in self.values]


# ------------------------------------------------------------------------------------ drop-out
class DropoutSchedule:
    """Windows ``client -> [(start, end), ...]`` (virtual or wall time; ``end`` may be ``inf``)
    during which the client is offline: it sends nothing, the server trains on its stored entries."""

    def __init__(self, schedule: Mapping[int, Sequence[Sequence[float]]] | None, num_clients: int,
                 horizon: float = math.inf) -> None:
        self.windows: dict[int, list[tuple[float, float]]] = {}
        for client, windows in (schedule or {}).items():
            client = int(client)
            if not 0 <= client < num_clients:
                raise ValueError(f"dropout schedule names unknown client {client}; clients are 0..{num_clients - 1}")
            clean = []
            for window in windows:
                if len(window) != 2:
                    raise ValueError(f"dropout window {window!r} of client {client} is not (start, end)")
                start, end = float(window[0]), float(window[1])
                if not start < end or start < 0:
                    raise ValueError(f"dropout window ({start}, {end}) of client {client} needs 0 <= start < end")
                clean.append((start, end))
            self.windows[client] = sorted(clean)
        if num_clients and all(self._offline_from(c, horizon) <= 0.0 for c in range(num_clients)):
            raise ValueError("the dropout schedule takes every client offline for the whole run")
        if num_clients and math.isinf(horizon) and all(
                math.isfinite(self._offline_from(c, horizon)) for c in range(num_clients)):
            raise ValueError("the dropout schedule takes every client offline for the rest of the run")

    def _offline_from(self, client: int, horizon: float) -> float:
        """The time from which ``client`` stays offline up to ``horizon`` (``inf`` if it never does)."""
        merged: list[list[float]] = []
        for start, end in self.windows.get(client, []):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        if merged and merged[-1][1] >= horizon:
            return merged[-1][0]
        return math.inf

    def offline(self, client: int, t: float) -> bool:
        return any(start <= t < end for start, end in self.windows.get(client, []))

    def back_online(self, client: int, t: float) -> float:
        """First time >= t at which ``client`` is online."""
        moved = True
        while moved:
            moved = False
            for start, end in self.windows.get(client, []):
                if start <= t < end:
                    t, moved = end, True
        return t

    def offline_fraction(self, client: int, horizon: float) -> float:
        covered = sum(max(0.0, min(end, horizon) - start) for start, end in self.windows.get(client, [])
                      if start < horizon)
        return covered / horizon if horizon > 0 else 0.0


# ------------------------------------------------------------------------------------ federation
@dataclass
class FederationConfig:
    """Everything that builds one VAFL federation (clients + server) from :class:`VerticalData`."""

    preset: str = "paper"
    embed_dim: int = 8
    hidden: int = 16
    head_hidden: int = 16
    kind: str = "mlp"
    lr: float = 0.05
    batch_size: int = 16
    step_rule: str = "constant"
    step_offset: float = 100.0
    sigma: float = 0.0
    clip: float = 1.0
    bound: str = "clip"
    delta: float = 1e-5
    weight_decay: float = 0.0
    server_update_every: int = 1
    local_steps: int = 1
    loss: str = "cross_entropy"
    seed: int = 0
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 1.0

    def validate(self) -> None:
        check_privacy_parameters(self.sigma, self.clip, self.delta, self.bound)
        check_dp_sgd_parameters(self.dp_noise_multiplier, self.dp_max_grad_norm)
        if self.step_rule not in STEP_SIZES:
            raise ValueError(f"unknown step size rule {self.step_rule!r}; choose from {', '.join(STEP_SIZES)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


@dataclass
class Federation:
    clients: list[VaflClient]
    server: VaflServer
    data: VerticalData
    config: FederationConfig

    def initialise(self) -> None:
        """Every client uploads each training sample once so no table row holds zeros."""
        for client in self.clients:
            self.server.initialise(client.client_id, client.release("train"))

    def evaluate(self, split: str = "test") -> dict[str, float]:
        """Accuracy, balanced accuracy (macro recall, torchmetrics) and loss on released embeddings."""
        from torchmetrics.functional.classification import binary_accuracy, multiclass_accuracy

        stack = torch.stack([c.release(split) if split == "test" else _unaccounted_train_release(c)
                             for c in self.clients], dim=1)
        output = self.server.predict(stack)
        targets = self.data.y_test if split == "test" else self.data.y_train
        loss = float(self.server.loss_fn(output, targets))
        if self.config.loss == "logistic":
            accuracy = float(binary_accuracy(torch.sigmoid(output), targets))
            balanced = accuracy
        else:
            classes = output.shape[-1]
            accuracy = float(multiclass_accuracy(output, targets, classes, average="micro"))
            balanced = float(multiclass_accuracy(output, targets, classes, average="macro"))
        return {"accuracy": accuracy, "balanced_accuracy": balanced, "loss": loss}

    def vertical_model(self) -> VerticalModel:
        """The trained parts assembled into one module (for checkpoints)."""
        model = create_model(self.config.preset, self.data.in_dims, self.data.num_classes,
                             embed_dim=self.config.embed_dim, hidden=self.config.hidden,
                             head_hidden=self.config.head_hidden, kind=self.config.kind)
        model.locals = torch.nn.ModuleList(c.model for c in self.clients)
        model.head = self.server.head
        return model


def _unaccounted_train_release(client: VaflClient) -> torch.Tensor:
    """Training-set embeddings for a diagnostic evaluation (not sent, so not accounted)."""
    with torch.no_grad():
        return client.perturb(client.bound(client.model(client.features)))


def build_federation(data: VerticalData, config: FederationConfig) -> Federation:
    """Split a freshly initialised vertical model (seeded) into its clients and server."""
    config.validate()
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, global RNG untouched
        torch.manual_seed(config.seed)
        model = create_model(config.preset, data.in_dims, data.num_classes, embed_dim=config.embed_dim,
                             hidden=config.hidden, head_hidden=config.head_hidden, kind=config.kind)
    clients = [
        VaflClient(m, data.train_parts[m], model.locals[m], lr=config.lr, batch_size=config.batch_size,
                   bound=EmbeddingBound(config.clip, config.bound), sigma=config.sigma, seed=config.seed,
                   step_rule=config.step_rule, step_offset=config.step_offset,
                   weight_decay=config.weight_decay, local_steps=config.local_steps, delta=config.delta,
                   test_features=data.test_parts[m], dp_noise_multiplier=config.dp_noise_multiplier,
                   dp_max_grad_norm=config.dp_max_grad_norm)
        for m in range(data.num_parties)
    ]
    server = VaflServer(model.head, data.y_train, data.num_parties, config.embed_dim, lr=config.lr,
                        loss=config.loss, server_update_every=config.server_update_every,
                        step_rule=config.step_rule, step_offset=config.step_offset)
    return Federation(clients, server, data, config)


# ------------------------------------------------------------------------------------ results
@dataclass
class RunHistory:
    """What a runtime measured: evaluation curves against server iterations and time, per-client
    counts, staleness, bytes and epsilon."""

    runtime: str
    iterations: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    balanced_accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    update_counts: list[int] = field(default_factory=list)
    client_updates: list[int] = field(default_factory=list)
    bytes_received: list[int] = field(default_factory=list)
    table_age: list[float] = field(default_factory=list)
    message_delay: list[int] = field(default_factory=list)
    epsilon: list[float] = field(default_factory=list)
    epsilon_params: list[float] = field(default_factory=list)
    epsilon_combined: list[float] = field(default_factory=list)
    duration: float = 0.0

    def record(self, iteration: int, t: float, metrics: Mapping[str, float]) -> None:
        self.iterations.append(iteration)
        self.times.append(t)
        self.accuracy.append(metrics["accuracy"])
        self.balanced_accuracy.append(metrics["balanced_accuracy"])
        self.loss.append(metrics["loss"])

    def finish(self, federation: Federation, duration: float) -> RunHistory:
        server = federation.server
        self.update_counts = list(server.update_counts)
        self.client_updates = [c.updates for c in federation.clients]
        self.bytes_received = list(server.bytes_received)
        self.table_age = list(server.staleness.table_age)
        self.message_delay = list(server.staleness.message_delay)
        self.epsilon = [c.epsilon() for c in federation.clients]
        self.epsilon_params = [c.epsilon_params() for c in federation.clients]
        self.epsilon_combined = [c.epsilon_combined() for c in federation.clients]
        self.duration = duration
        return self

    @property
    def final_accuracy(self) -> float:
        return self.accuracy[-1]

    def accuracy_at(self, iteration: int) -> float:
        """The accuracy evaluated at server iteration ``iteration`` (a point of the curve)."""
        if iteration not in self.iterations:
            raise ValueError(f"no evaluation at server iteration {iteration}; the curve has "
                             f"{self.iterations[:3]} ... {self.iterations[-2:]}")
        return self.accuracy[self.iterations.index(iteration)]

    def time_to_fraction(self, fraction: float = 0.95) -> float:
        """First time the accuracy reaches ``fraction`` of its final value."""
        target = fraction * self.final_accuracy
        for t, accuracy in zip(self.times, self.accuracy):
            if accuracy >= target:
                return t
        return self.times[-1]


def _check_budget(budget: int) -> None:
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget (server updates) must be a positive integer, got {budget!r}")


# ------------------------------------------------------------------------------------ simulation
class SimRuntime:
    """Seeded discrete-event simulation of VAFL (spec section 3).

    Each client's compute time per upload is drawn from its own distribution (a separate NumPy
    generator seeded with ``seed``), events run in virtual-time order, and the server handles each
    arrival at once. ``budget`` counts server updates. A client whose upload would arrive while it
    is offline loses that work and restarts when it is back.
    """

    name = "sim"

    def __init__(self, delays: str = "exp:1,2,4,8", budget: int = 4000, seed: int = 0,
                 dropout: Mapping[int, Sequence[Sequence[float]]] | None = None,
                 eval_every: int = 200) -> None:
        _check_budget(budget)
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        self.delays, self.budget, self.seed = delays, budget, seed
        self.dropout, self.eval_every = dropout, eval_every

    def run(self, federation: Federation, callback: Callable[[int, float], None] | None = None) -> RunHistory:
        clients, server = federation.clients, federation.server
        spec = DelaySpec.parse(self.delays, len(clients))
        schedule = DropoutSchedule(self.dropout, len(clients))
        rng = np.random.default_rng(self.seed)
        history = RunHistory(self.name)
        if not server.initialised:
            federation.initialise()
        history.record(0, 0.0, federation.evaluate())
        events = [(spec.draw(m, rng), m) for m in range(len(clients))]
        heapq.heapify(events)
        now = 0.0
        bar = iter(progress(range(self.budget), desc="vafl sim"))
        while server.iteration < self.budget:
            now, m = heapq.heappop(events)
            if schedule.offline(m, now):
                heapq.heappush(events, (schedule.back_online(m, now) + spec.draw(m, rng), m))
                continue
            reply = server.handle(clients[m].step(sent_time=now))
            clients[m].apply(reply)
            heapq.heappush(events, (now + spec.draw(m, rng), m))
            next(bar, None)
            if callback is not None:
                callback(server.iteration, now)
            if server.iteration % self.eval_every == 0 or server.iteration == self.budget:
                history.record(server.iteration, now, federation.evaluate())
        return history.finish(federation, now)


class SyncRuntime:
    """Synchronous VFL baseline: every round all clients embed the same batch; the round lasts as
    long as the slowest client's draw (virtual time = max of the draws); one server update per round."""

    name = "sync"

    def __init__(self, delays: str = "exp:1,2,4,8", rounds: int = 1000, seed: int = 0,
                 eval_every: int = 50) -> None:
        _check_budget(rounds)
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        self.delays, self.rounds, self.seed, self.eval_every = delays, rounds, seed, eval_every

    def run(self, federation: Federation) -> RunHistory:
        clients, server = federation.clients, federation.server
        spec = DelaySpec.parse(self.delays, len(clients))
        rng = np.random.default_rng(self.seed)
        batch_generator = torch.Generator().manual_seed(self.seed + 1)
        history = RunHistory(self.name)
        if not server.initialised:
            federation.initialise()
        history.record(0, 0.0, federation.evaluate())
        now = 0.0
        size, n = federation.config.batch_size, federation.data.num_train
        for _ in progress(range(self.rounds), desc="vafl sync"):
            now += max(spec.draw(m, rng) for m in range(len(clients)))
            indices = torch.randperm(n, generator=batch_generator)[:size]
            uploads = [c.step(indices=indices, sent_time=now) for c in clients]
            for client, reply in zip(clients, server.handle_round(uploads)):
                client.apply(reply)
            if server.iteration % self.eval_every == 0 or server.iteration == self.rounds:
                history.record(server.iteration, now, federation.evaluate())
        return history.finish(federation, now)


# ------------------------------------------------------------------------------------ threads
class ThreadedRuntime:
    """Real concurrency: one OS thread per client, one server thread, an upload queue and a reply
    queue per client; compute times are real sleeps of ``delays_ms`` (a delay spec in ms).

    ``synchronous=True`` is threaded synchronous VFL (the server hands every client the same batch
    and waits for all uploads each round). Evaluation runs every ``eval_every_s`` seconds under the
    per-party locks. Shutdown is clean: clients finish their pending message, the server answers
    every upload it received, every thread is joined.
    """

    name = "threads"

    def __init__(self, delays_ms: str = "exp:1,2,4,8", duration_s: float = 5.0,
                 dropout: Mapping[int, Sequence[Sequence[float]]] | None = None, seed: int = 0,
                 budget: int | None = None, synchronous: bool = False, eval_every_s: float = 0.5,
                 target_accuracy: float | None = None) -> None:
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s}")
        if budget is not None:
            _check_budget(budget)
        self.delays_ms, self.duration_s, self.dropout, self.seed = delays_ms, duration_s, dropout, seed
        self.budget, self.synchronous, self.eval_every_s = budget, synchronous, eval_every_s
        self.target_accuracy = target_accuracy
        self.threads: list[threading.Thread] = []
        self.arrivals: list[tuple[float, int]] = []

    def run(self, federation: Federation) -> RunHistory:
        clients, server = federation.clients, federation.server
        num = len(clients)
        spec = DelaySpec.parse(self.delays_ms, num)
        schedule = DropoutSchedule(self.dropout, num, horizon=self.duration_s)
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
                    elif schedule.offline(m, elapsed()):
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
                        self.arrivals.append((elapsed(), upload.client))
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
