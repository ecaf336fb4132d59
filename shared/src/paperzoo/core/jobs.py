"""Independent jobs of an experiment on worker processes, with a timeout on every wait.

A small scheduler on a spawn-context ``multiprocessing.Pool`` for the independent pieces of a
validation run (trainings, searches, seeds): at most ``workers`` jobs are in flight, each worker
runs with one torch thread, and the caller may put jobs that became ready at the front of the
queue. A job should reseed everything it draws from, so that its result does not depend on which
process runs it or in which order (then the numbers are the same for any ``workers``).

Fault policy: every wait has a timeout. A job that raises, runs longer than ``timeout_s`` or
whose worker process dies is recorded as a :class:`JobFailure` (name and reason) and the other
jobs go on; a timed-out worker is stopped by restarting the pool (jobs in flight beside it are
queued again). A job that no worker has started ``start_timeout_s`` after it was handed over
means the workers cannot start (e.g. a script without an ``if __name__ == "__main__"`` guard
under the spawn start method): every job not yet finished is then recorded as failed. Workers
exit when the scheduling process dies. With ``workers=1`` the jobs run one after another in this
process, in submission order, with the caller's thread setting: an exception is recorded the same
way, but nothing can interrupt a running job there, so ``timeout_s`` applies only to worker
processes. :class:`JobRecord` keeps each job's wall and CPU seconds and the process that ran it.

This module imports neither torch nor Lightning; a worker sets torch to one thread when the job's
module has imported it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["JobFailure", "JobRecord", "JobRunner", "check_timeout", "code_version", "job_name",
           "source_hash"]

_STARTED = None  # in a worker: the queue that announces (job name, worker pid)


@dataclass
class JobFailure:
    """A job that did not return: its name and why (exception, timeout, dead worker)."""

    name: str
    reason: str


@dataclass
class JobRecord:
    """Cost of one finished job: wall and CPU seconds of the process that ran it."""

    name: str
    ok: bool
    wall_s: float
    cpu_s: float
    pid: int


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the scheduler is gone (killed): do not outlive it


def _init_worker(started, parent: int) -> None:
    global _STARTED
    _STARTED = started
    import threading

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread a worker
        os.environ[name] = "1"
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _call(name: str, function: Callable, args: tuple) -> tuple:
    """Run one job; returns ``(ok, result or error text, wall s, cpu s, pid)``."""
    if _STARTED is not None:
        _STARTED.put((name, os.getpid()))
        torch = sys.modules.get("torch")  # imported with the job's module, if it uses torch
        if torch is not None:
            torch.set_num_threads(1)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result, ok = function(*args), True
    except Exception as error:  # recorded by the caller, never fatal to the other jobs
        result, ok = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}", False
    return ok, result, time.perf_counter() - wall, time.process_time() - cpu, os.getpid()


def check_timeout(timeout_s: float, option: str = "job_timeout_s") -> None:
    """Refuse a timeout that is not a finite positive number of seconds; the error names
    ``option`` (the caller's name for it, ``job_timeout_s`` by default)."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not (math.isfinite(timeout_s) and timeout_s > 0)
    ):
        raise ValueError(f"{option} must be a positive number of seconds, got {timeout_s!r}")


def check_workers(workers: int, option: str = "workers") -> None:
    """Refuse a worker count that is not a positive integer; the error names ``option``."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{option} must be a positive integer, got {workers!r}")


class JobRunner:
    """Run named jobs on ``workers`` processes (1: in this process) with a per-job timeout.

    ``submit(name, function, *args)`` queues a job and starts it when a worker is free
    (``first=True`` puts it at the front of the queue and leaves the start to ``wait``);
    ``wait(names)`` dispatches queued jobs and returns ``{name: result or JobFailure}`` once the
    named ones are done. ``function`` must be importable (a module-level function) and its
    arguments and result picklable. Use as a context manager so the workers are always stopped.
    """

    def __init__(
        self,
        workers: int = 1,
        timeout_s: float = 3600.0,
        poll_s: float = 0.1,
        start_timeout_s: float = 300.0,
    ) -> None:
        check_workers(workers)
        check_timeout(timeout_s)
        self.workers, self.timeout_s, self.poll_s = workers, float(timeout_s), poll_s
        self.start_timeout_s = min(float(start_timeout_s), self.timeout_s)
        self.results: dict[str, Any] = {}
        self.records: list[JobRecord] = []
        self._pending: list[tuple[str, Callable, tuple]] = []
        self._running: dict[str, tuple[Any, float, Callable, tuple]] = {}
        self._pids: dict[str, int] = {}
        self._context = multiprocessing.get_context("spawn")
        self._pool = None
        self._started = None

    # context manager -------------------------------------------------------------------------
    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (every job this runner waited for is finished by then)."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    # jobs --------------------------------------------------------------------------------------
    def submit(self, name: str, function: Callable, *args: Any, first: bool = False) -> None:
        known = {*self.results, *self._running, *(job[0] for job in self._pending)}
        if name in known:
            raise ValueError(f"job {name!r} was submitted twice")
        if self.workers == 1:
            self._finish(name, _call(name, function, args))
        elif first:  # dispatched by the next wait(), so that jobs queued together keep their order
            self._pending.insert(0, (name, function, args))
        else:  # starts now if a worker is free (the caller may work meanwhile)
            self._pending.append((name, function, args))
            self._dispatch()

    def wait(self, names: Iterable[str]) -> dict[str, Any]:
        """Results of the named jobs (a :class:`JobFailure` for each one that failed)."""
        names = list(names)
        known = {*self.results, *self._running, *(job[0] for job in self._pending)}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"no job named {', '.join(map(repr, unknown))} was submitted")
        while any(name not in self.results for name in names):
            self._dispatch()
            if not self._collect():
                time.sleep(self.poll_s)
        return {name: self.results[name] for name in names}

    # internals ---------------------------------------------------------------------------------
    def _ensure_pool(self) -> None:
        if self._pool is None:
            self._started = self._context.SimpleQueue()  # unbuffered: survives os._exit
            self._pool = self._context.Pool(
                self.workers, initializer=_init_worker, initargs=(self._started, os.getpid())
            )
            self._pids = {}

    def _dispatch(self) -> None:
        while self._pending and len(self._running) < self.workers:
            self._ensure_pool()
            name, function, args = self._pending.pop(0)
            handle = self._pool.apply_async(_call, (name, function, args))
            self._running[name] = (handle, time.perf_counter(), function, args)

    def _finish(self, name: str, outcome: tuple) -> None:
        ok, result, wall, cpu, pid = outcome
        self.results[name] = result if ok else JobFailure(name, result)
        self.records.append(JobRecord(name, ok, wall, cpu, pid))

    def _fail(self, name: str, reason: str) -> None:
        self._running.pop(name)
        self.results[name] = JobFailure(name, reason)
        self.records.append(JobRecord(name, False, math.nan, math.nan, self._pids.get(name, -1)))

    def _collect(self) -> bool:
        """Take finished results; fail timed-out jobs and jobs whose worker died. True if any
        job left the running set."""
        while self._started is not None and not self._started.empty():
            name, pid = self._started.get()
            self._pids[name] = pid
        changed, timed_out = False, False
        alive = {child.pid for child in multiprocessing.active_children()}
        now = time.perf_counter()
        for name, (handle, started, _, _) in list(self._running.items()):
            if handle.ready():
                self._running.pop(name)
                try:
                    self._finish(name, handle.get(timeout=self.timeout_s))
                except Exception as error:  # the result could not be sent back
                    self.results[name] = JobFailure(name, f"{type(error).__name__}: {error}")
                    self.records.append(JobRecord(name, False, now - started, math.nan, -1))
                changed = True
            elif now - started > self.timeout_s:
                self._fail(name, f"timed out after {self.timeout_s:g} s")
                changed = timed_out = True
            elif name in self._pids and self._pids[name] not in alive:
                self._fail(name, f"worker process {self._pids[name]} died")
                changed = True
            elif name not in self._pids and now - started > self.start_timeout_s:
                reason = (
                    f"no worker process started it within {self.start_timeout_s:g} s "
                    "(workers fail at start-up; workers=1 runs in this process)"
                )
                for other in list(self._running):
                    self._fail(other, reason)
                for other, _, _ in self._pending:
                    self.results[other] = JobFailure(other, reason)
                    self.records.append(JobRecord(other, False, math.nan, math.nan, -1))
                self._pending.clear()
                self.close()
                return True
        if timed_out:  # a hung worker holds its slot: restart the pool, requeue the others
            requeue = [(name, job[2], job[3]) for name, job in self._running.items()]
            self._running.clear()
            self.close()
            self._pending[:0] = requeue
        return changed


# Keys of stored job results (joblib.Memory caches of cafe and rco): results are reused only
# under the same code, so that an upgraded or edited package recomputes them.


@functools.cache
def source_hash(package: str) -> str:
    """SHA-256 of every ``.py`` file (relative names and bytes) of the imported ``package``
    (e.g. ``"paperzoo.rco"``), computed once per process."""
    folder = Path(importlib.import_module(package).__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def code_version(package: str, source: str | None = None) -> str:
    """``package``'s version and source hash, and the core's: a part of every stored result's
    key. ``source`` replaces the package's hash (a package passes its own, patchable one)."""
    module = importlib.import_module(package)
    core = importlib.import_module("paperzoo.core")
    return (f"{package} {getattr(module, '__version__', '?')} {source or source_hash(package)}; "
            f"paperzoo.core {core.__version__} {source_hash('paperzoo.core')}")


def job_name(function: Callable) -> str:
    """A job function's module, name and a hash of its own source (when it has one): a replaced
    job function (tests, experiments) gets its own stored results."""
    import inspect

    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        source = ""
    name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"
    return f"{name} {hashlib.sha256(source.encode()).hexdigest()[:16]}"
