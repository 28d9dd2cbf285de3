"""The worker: a loop over store operations (claim, advance with the engine, let go).

Each of ``concurrency`` slot threads claims one run at a time under a fresh driver
owner (so two runs of one worker are two owners), advances it with the engine exactly
as ``flow.resume`` would — heartbeat, fencing and all — and claims the next one. The
calling thread keeps the worker's row in the ``workers`` table fresh and, on
PostgreSQL, the slot that polls waits on ``NOTIFY`` too (see ``Worker._idle``).
"""

from __future__ import annotations

import copy
import logging
import os
import random
import select
import socket
import threading
from collections.abc import Iterable
from typing import Any

import purpose_agent
from purpose_agent.errors import (
    FlowDefinitionError,
    LeaseError,
    PurposeAgentError,
    RunStateError,
)
from purpose_agent.flow.engine import Runner
from purpose_agent.flow.graph import Flow
from purpose_agent.flow.queueing import fail_run, take_up
from purpose_agent.flow.registry import FlowRef
from purpose_agent.flow.signals import LeaseLost, find_signal
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer
from purpose_agent.runtime.journal import Commit
from purpose_agent.runtime.owners import driver, owner_id
from purpose_agent.runtime.queue import (
    DEFAULT_QUEUE,
    Claim,
    WorkerInfo,
    check_queue_name,
    queue_store,
)

log = logging.getLogger("purpose_agent.worker")

DEFAULT_TAKEOVER_LIMIT = 5


class WorkerStopping(BaseException):
    """Raised at a node boundary of a run a stopping worker advances: the engine then
    leaves the run at its last commit and gives its lease back (so another worker can
    take it at once). A BaseException, so no node code can swallow it."""


class _WorkerRunner(Runner):
    """The engine's Runner, stopping at the next node boundary once its worker stops."""

    def __init__(self, *args: Any, stopping: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = stopping

    def next_node(self) -> Any:
        if self._stopping.is_set():
            raise WorkerStopping("the worker is stopping; the run goes back to its queue")
        return super().next_node()


class Worker:
    """Claims runs from a store's queues and advances them, ``concurrency`` at a time.

    ``store`` is a SQLite or PostgreSQL store, or its URL. ``flows`` are the flows this
    worker runs (:class:`Flow` objects, or ``module:attr`` / ``file.py:attr``
    references, imported here): it claims only runs enqueued for one of them, by name,
    and never imports a flow a run names. ``lease_ttl`` (default: each flow's) is how
    long a run stays with a worker that stopped answering before another worker takes it
    over; a run taken over more than ``takeover_limit`` times is FAILED with a
    ``run.error`` rather than retried forever. Idle slots poll every ``poll_interval``
    seconds (with jitter); on PostgreSQL a ``NOTIFY`` after each enqueue wakes them at
    once (``listen=False`` turns that off).

    :meth:`run` blocks until :meth:`stop` (a signal handler may call it): then the
    worker claims nothing more, lets each run in flight finish its node, commits it and
    gives its lease back, so other workers can take the run at once.
    """

    def __init__(self, store: BaseCheckpointer | str, *, flows: Iterable[Flow | str],
                 queues: Iterable[str] = (DEFAULT_QUEUE,), concurrency: int = 1,
                 lease_ttl: float | None = None, poll_interval: float = 1.0,
                 takeover_limit: int = DEFAULT_TAKEOVER_LIMIT,
                 heartbeat_interval: float = 5.0, listen: bool = True) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        if lease_ttl is not None and not float(lease_ttl) > 0:
            raise ValueError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        if not float(poll_interval) > 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {poll_interval!r}")
        self.flows = _flows_by_name(flows, lease_ttl)
        self.queues = tuple(dict.fromkeys(check_queue_name(q) for q in queues))
        if not self.queues:
            raise ValueError("a worker needs at least one queue to serve")
        self.cp = open_checkpointer(store) if isinstance(store, str) else store
        self._queue = queue_store(self.cp)  # QueueUnsupported for JSONL / memory
        self.concurrency = concurrency
        self.poll_interval = float(poll_interval)
        self.takeover_limit = takeover_limit
        self.heartbeat_interval = float(heartbeat_interval)
        self.listen = listen
        self.id = f"{owner_id()}/{os.urandom(3).hex()}"
        self.counts = {"completed": 0, "failed": 0, "paused": 0, "cancelled": 0,
                       "released": 0, "lost": 0}
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._hints = 0  # wake-ups not yet taken by a slot (at most one per slot)
        self._polling = False  # an idle slot is waiting out the poll interval
        self._sleepers = 0  # idle slots waiting for a hint (not the polling one)
        # On PostgreSQL the polling slot waits on the LISTEN connection's socket and on
        # this pipe, which hints and stop() write to (see _idle).
        self._listener: Any = None
        self._pipe: tuple[int, int] | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    # ── running ──────────────────────────────────────────────────────────────────
    def run(self) -> None:
        """Serve the queues until :meth:`stop`; returns once every slot has let go."""
        self._queue.register_worker(WorkerInfo(
            id=self.id, host=socket.gethostname(), pid=os.getpid(),
            version=purpose_agent.__version__, started_at=0.0, heartbeat_at=0.0,
            in_flight=0, concurrency=self.concurrency, queues=self.queues,
            flows=tuple(self.flows), stopped_at=None))
        threads = [threading.Thread(target=self._slot, name=f"purpose-worker-{i}", daemon=True)
                   for i in range(self.concurrency)]
        self._start_listener()
        for thread in threads:
            thread.start()
        try:
            while not self._stopping.wait(self.heartbeat_interval):
                try:
                    self._queue.beat_worker(self.id, self._in_flight)
                except PurposeAgentError as exc:
                    log.warning("worker %s: heartbeat failed (%s); retrying", self.id, exc)
        finally:
            self.stop()
            for thread in threads:
                thread.join()
            self._close_listener()
            try:
                self._queue.stop_worker(self.id)
            except PurposeAgentError as exc:
                log.warning("worker %s: could not mark itself stopped: %s", self.id, exc)

    def stop(self) -> None:
        """Stop claiming; runs in flight stop at their next node boundary and go back to
        their queue. Safe to call from a signal handler or another thread."""
        self._stopping.set()
        self._wake_all()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ── one slot ─────────────────────────────────────────────────────────────────
    def _slot(self) -> None:
        flows = tuple(self.flows)
        while not self._stopping.is_set():
            try:
                with driver() as owner:
                    claim = self._queue.claim(owner=owner, worker=self.id, queues=self.queues,
                                              flows=flows, ttl=self._ttl(flows),
                                              takeover_limit=self.takeover_limit)
                    if claim is not None:
                        # There may be more: let one idle slot look too (a chain, so a
                        # burst of runs fans out slot by slot, and no slot polls for
                        # nothing when one run came).
                        self._hint()
                        self._advance(claim)
                        continue
            except PurposeAgentError as exc:
                # The store is unreachable or busy: the runs stay where they are (their
                # leases expire if they were ours); try again after a pause.
                log.warning("worker %s: %s", self.id, exc)
            self._idle()

    def _ttl(self, flows: tuple[str, ...]) -> float:
        # The claim's lease must outlast the first renewal of whichever flow it turns out
        # to be (every lease_ttl / 3): the longest of them.
        return max(self.flows[name].lease_ttl for name in flows)

    def _idle(self) -> None:
        """Wait until this slot should try a claim: a hint (another slot claimed a run),
        a NOTIFY, or — for the one idle slot that polls — the poll interval. The other
        idle slots wait for a hint without a timeout, so a worker polls once per interval
        however many slots it has, and one hint wakes one slot, not all of them.

        On PostgreSQL the polling slot waits on the LISTEN connection's socket itself,
        so a NOTIFY wakes the thread that claims the run: no listener thread to wake
        first (under load, each thread hop is a wait for a CPU)."""
        with self._wake:
            while not self._stopping.is_set():
                if self._hints:
                    self._hints -= 1
                    return
                if self._polling:
                    self._sleepers += 1
                    try:
                        self._wake.wait()
                    finally:
                        self._sleepers -= 1
                    continue
                self._polling = True
                try:
                    # Jitter, so the workers of a pool do not poll in step.
                    timeout = self.poll_interval * random.uniform(0.5, 1.5)
                    if self._listener is None:
                        hinted = self._wake.wait(timeout)
                    else:
                        self._wake.release()  # hints reach it through the pipe meanwhile
                        try:
                            hinted = self._listen(timeout)
                        finally:
                            self._wake.acquire()
                finally:
                    self._polling = False
                    self._wake.notify()  # an idle slot takes over the polling
                if not hinted:
                    return

    def _listen(self, timeout: float) -> bool:
        """The polling slot's wait on PostgreSQL: True for a hint or stop() (through the
        pipe), False for a NOTIFY or the end of ``timeout`` (time to try a claim)."""
        listener, pipe = self._listener, self._pipe
        assert pipe is not None
        try:
            ready, _, _ = select.select([listener.fileno(), pipe[0]], [], [], timeout)
            if listener.fileno() in ready:
                listener.drain()
                return False
        except Exception as exc:  # the connection is gone: poll from now on
            log.warning("worker %s: LISTEN connection lost (%s); polling every %.1fs",
                        self.id, exc, self.poll_interval)
            self._listener = None
            listener.close()
            return False
        if pipe[0] in ready:
            try:
                os.read(pipe[0], 4096)
            except BlockingIOError:
                pass
            return True
        return False

    def _hint(self) -> None:
        """Wake one idle slot to try a claim (or the next slot to go idle, if none is)."""
        with self._wake:
            self._hints = min(self._hints + 1, self.concurrency)
            self._wake.notify()  # a sleeper, or the polling slot when it has no socket
            if self._polling and not self._sleepers:
                self._poke()  # the polling slot, on its socket

    def _wake_all(self) -> None:
        with self._wake:
            self._wake.notify_all()
        self._poke()

    def _poke(self) -> None:
        """Wake the slot waiting on the LISTEN socket, if there is one."""
        if self._pipe is not None:
            try:
                os.write(self._pipe[1], b"!")
            except (BlockingIOError, OSError):
                pass  # full (it will wake anyway) or closed (the worker has stopped)

    def _advance(self, claim: Claim) -> None:
        """Advance a claimed run (its lease is ours) until it stops, then let go."""
        flow = self.flows[claim.flow]
        run_id = claim.run_id
        with self._lock:
            self._in_flight += 1
        try:
            if self._stopping.is_set():
                self.cp.commit(run_id, Commit(fence=claim.lease.fence, release=True))
                return
            if claim.state is None:  # over the takeover limit: not resumed
                self._fail_taken_over(flow, claim)
                return
            runner = take_up(flow, self.cp, claim, _WorkerRunner, stopping=self._stopping)
            state = runner.drive()  # its last commit also took it off the queue's index
            self._count(str(state.status))
            log.info("run %s %s", run_id, state.status)
        except WorkerStopping:
            self._count("released")
            log.info("run %s: handed back to its queue (worker stopping)", run_id)
        except BaseException as exc:
            if find_signal(exc, LeaseLost) is not None or isinstance(exc, LeaseError):
                self._count("lost")
                log.warning("run %s was taken over by another worker: %s", run_id, exc)
            elif isinstance(exc, Exception):
                log.exception("worker %s: advancing run %s stopped", self.id, run_id)
            else:
                raise
        finally:
            with self._lock:
                self._in_flight -= 1

    def _fail_taken_over(self, flow: Flow, claim: Claim) -> None:
        state = self.cp.load_latest(claim.run_id)
        node = (state.current_node if state is not None else None) or "its next node"
        fail_run(flow, self.cp, claim.lease, RunStateError(
            f"run {claim.run_id!r} was taken over {claim.takeovers} times from workers "
            f"that stopped answering while advancing it (the limit is {self.takeover_limit}),"
            f" so it is failed rather than retried forever; node {node!r} may be what kills "
            "its workers. Check it, then `purpose-agent resume` puts the run back on its "
            "queue"))
        self._count("failed")
        log.warning("run %s failed: taken over %d times (limit %d)", claim.run_id,
                    claim.takeovers, self.takeover_limit)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    # ── wake-ups ─────────────────────────────────────────────────────────────────
    def _start_listener(self) -> None:
        listen = getattr(self._queue, "listen", None)
        if not self.listen or listen is None:
            return
        try:
            self._listener = listen()
        except Exception as exc:  # polling still works: say so, and go on
            log.warning("worker %s: cannot LISTEN for new runs (%s); polling every %.1fs",
                        self.id, exc, self.poll_interval)
            return
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self._pipe = (read, write)

    def _close_listener(self) -> None:
        """Once every slot has stopped."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            for fd in pipe:
                os.close(fd)


def _flows_by_name(flows: Iterable[Flow | str], lease_ttl: float | None) -> dict[str, Flow]:
    out: dict[str, Flow] = {}
    for given in flows:
        flow = (FlowRef.parse(given, source="the worker's flows").load()
                if isinstance(given, str) else given)
        if not isinstance(flow, Flow):
            raise TypeError(f"a worker's flows are Flow objects or references, got "
                            f"{type(flow).__name__}")
        if flow.name in out and out[flow.name] is not flow:
            raise FlowDefinitionError(f"two flows named {flow.name!r} given to one worker; "
                                      "runs select their flow by name")
        if lease_ttl is not None:
            flow = copy.copy(flow)  # the caller's flow keeps its own lease
            flow.lease_ttl = float(lease_ttl)
        out[flow.name] = flow
    if not out:
        raise ValueError("a worker needs at least one flow to run (flows=[...] / --flow)")
    return out
