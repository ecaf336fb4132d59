"""The simulated runtimes (spec section 3): a seeded discrete-event simulation of VAFL, with a
compute-time distribution per client and events in virtual-time order, and the synchronous VFL
baseline whose rounds last as long as the slowest client.

Each asynchronous client runs its own loop on its own clock (draw a batch, compute, upload,
receive its reply, apply it) and the server handles messages in arrival order; nothing waits for
the other clients (spec pitfall 1).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from paperzoo.core.runtime import progress
from paperzoo.vafl.delays import DelaySpec, DropoutSchedule, check_budget
from paperzoo.vafl.federation import Federation, RunHistory


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
        check_budget(budget)
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
        check_budget(rounds)
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
