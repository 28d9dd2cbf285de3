"""Keeping a run's lease while a driver advances it: one thread per process renews them all.

The keeper is a Python thread, so it renews only when it gets the GIL: a C call that
holds the GIL longer than the lease (a huge regex or JSON parse, a C extension that does
not release it) starves it, the lease lapses, and another driver may take the run over.
The stalled driver then finds out before its next step (:meth:`Runner.check_lease`) and
its commits are refused; only the step under way when it stalled may run twice. Size
``Flow(lease_ttl=...)`` above the longest such call (the default, 60 s, allows ~40 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Protocol

from purpose_agent.errors import LeaseError
from purpose_agent.flow.plan import Plan
from purpose_agent.flow.signals import LeaseLost
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.journal import Lease
from purpose_agent.runtime.state import RunState


class Runner(Protocol):
    """What the heartbeat needs of the driver whose lease it keeps (engine.Runner)."""

    cp: BaseCheckpointer
    lease: Lease
    state: RunState

    def renewed(self, lease: Lease, sent: float) -> None: ...
    def lose_lease(self, reason: str) -> None: ...

class Driver(Runner, Protocol):
    """What :func:`check_lease` needs of the driver (engine.Runner)."""

    flow: Plan
    lease_lost: bool
    lease_lost_reason: str | None
    renewed_at: float  # monotonic time the last good renewal was sent
    recheck_after: float
    writing: bool
    alarm: Any  # the node's timeouts.Alarm, or None


def check_lease(runner: Driver) -> None:
    """Before a node or a step starts: stop (LeaseLost) if the lease is lost, or may be.

    A driver frozen past its lease (SIGSTOP, a long GC, a VM pause) may have been taken
    over meanwhile; its commits would be refused, but a step's side effect would run
    first. So once the last renewal is older than half the lease, the lease is renewed
    here, before anything else happens (one store round trip, only then: the heartbeat
    keeps it fresh otherwise).
    """
    if runner.lease_lost:
        raise LeaseLost(runner.lease_lost_reason or runner.state.run_id)
    if time.monotonic() - runner.renewed_at <= runner.recheck_after:
        return
    sent = time.monotonic()
    runner.writing = True  # a timeout waits for the store's answer
    try:
        lease = runner.cp.renew_lease(runner.lease, runner.flow.lease_ttl)
    except LeaseError:
        runner.lose_lease(f"run {runner.state.run_id!r} was taken over by another driver "
                          "while this one was stalled past its lease; it stopped before "
                          "starting anything more")
        raise LeaseLost(runner.lease_lost_reason) from None
    finally:
        runner.writing = False
    runner.renewed(lease, sent)
    if runner.alarm is not None:
        runner.alarm.deliver()


log = logging.getLogger("purpose_agent")


class Heartbeat:
    """Renews the run's lease in the background while a driver advances it.

    One daemon thread per process (:class:`_LeaseKeeper`) serves every driver: starting
    and joining a thread per run cost ~0.2 ms, a sizeable share of a short run.
    """

    def __init__(self, runner: Runner, ttl: float) -> None:
        self.runner, self.ttl = runner, ttl
        self.due = 0.0

    def renew(self) -> bool:
        """Renew the lease once; False once it is lost to another owner."""
        runner = self.runner
        sent = time.monotonic()
        try:
            lease = runner.cp.renew_lease(runner.lease, self.ttl)
        except LeaseError:
            runner.lose_lease(f"run {runner.state.run_id!r} was taken over by another driver "
                              "(its lease was lost); this driver stopped advancing it")
            return False
        except Exception as exc:
            # A busy or failing store: try again at the next beat. If it stays so, the
            # driver re-checks the lease itself before its next step (and fails there).
            log.warning("renewing the lease of run %r failed (%s: %s); retrying",
                        runner.state.run_id, type(exc).__name__, exc)
            return True
        runner.renewed(lease, sent)
        return True

    def __enter__(self) -> Heartbeat:
        _keeper.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _keeper.remove(self)


class _LeaseKeeper:
    """The thread that renews every registered lease every ``ttl / 3`` seconds."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._beats: dict[Heartbeat, None] = {}
        self._renewing: Heartbeat | None = None
        self._thread: threading.Thread | None = None
        self._wake: float | None = None  # when the thread wakes next (None: when told)

    def add(self, beat: Heartbeat) -> None:
        with self._cond:
            beat.due = time.monotonic() + beat.ttl / 3
            self._beats[beat] = None
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._keep, name="purpose-lease",
                                                daemon=True)
                self._thread.start()
            # Wake the thread only if it would sleep past this beat: waking it costs the
            # driver a GIL hand-over (~15 µs, a tenth of a short run's start).
            if self._wake is None or beat.due < self._wake:
                self._cond.notify_all()

    def remove(self, beat: Heartbeat) -> None:
        """Stop renewing ``beat``; returns once no renewal of it is under way, so none
        happens after its driver has returned."""
        with self._cond:
            self._beats.pop(beat, None)
            while self._renewing is beat:
                self._cond.wait()

    def _keep(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            # Its drivers' leases are no longer renewed: they must stop rather than carry
            # on unrenewed (and be taken over while they still write). The next driver to
            # register starts a new thread.
            with self._cond:
                beats, self._beats = list(self._beats), {}
                self._renewing, self._wake = None, None
                self._cond.notify_all()
            for beat in beats:
                beat.runner.lose_lease(
                    f"run {beat.runner.state.run_id!r}: the lease keeper thread died "
                    f"({type(exc).__name__}: {exc}), so its lease is no longer renewed; "
                    "this driver stopped. Resume the run to continue it")
            log.critical("the lease keeper thread died; %d driver(s) stopped: %s",
                         len(beats), ", ".join(repr(b.runner.state.run_id) for b in beats),
                         exc_info=exc)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                due = [beat for beat in self._beats if beat.due <= now]
                if not due:
                    self._wake = min((beat.due for beat in self._beats), default=None)
                    self._cond.wait(None if self._wake is None else self._wake - now)
                    self._wake = None
                    continue
                for beat in due:
                    if beat not in self._beats:
                        continue
                    beat.due = now + beat.ttl / 3
                    self._renewing = beat
                    self._cond.release()
                    try:
                        alive = beat.renew()
                    finally:
                        self._cond.acquire()
                        self._renewing = None
                        self._cond.notify_all()
                    if not alive:
                        self._beats.pop(beat, None)

    def after_fork(self) -> None:
        """In a forked child: the parent's thread and its lock state did not come along."""
        self.__init__()  # type: ignore[misc]


_keeper = _LeaseKeeper()
os.register_at_fork(after_in_child=_keeper.after_fork)
