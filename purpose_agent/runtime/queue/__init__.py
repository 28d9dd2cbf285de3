"""The run queue: runs waiting for a worker, and the workers that claim them.

A queued run is an ordinary run (status QUEUED, journaled like a start) plus a row in
the store's ``queue`` table saying which queue it waits on, for which flow, with which
priority, from when (its delay, on the store's clock) and under which dedup key. The
run's own status and lease stay the truth about who may advance it:

- a run is *claimable* when its queue row is active, its delay has passed, and it is
  QUEUED or RUNNING with no live lease (never started; given back by a worker that
  stopped gracefully or by ``approve``; or left by a worker that died, once its lease
  expired — a *takeover*, counted per run);
- a claim takes the run's lease (a new fencing epoch) in the same transaction that picks
  it (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``), highest
  priority first, then oldest; that transaction also journals the run's ``run.resumed``
  (RUNNING, under the new lease) and loads the run's state and its next node's step
  records, so a worker starts the run's next node without another commit or read;
- a run that pauses, fails, completes or is cancelled is not claimable whatever its
  queue row says: waiting costs no worker slot.

The SQL lives in ``_sqlite.py`` and ``_postgres.py`` (psycopg imported only there);
:func:`queue_store` gives the one for a store. This package imports only the standard
library at module level.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from purpose_agent.errors import QueueError, QueueUnsupported
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit, Delta, Lease, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus

if TYPE_CHECKING:
    from purpose_agent.runtime.checkpoint._base import BaseCheckpointer

DEFAULT_QUEUE = "default"
# The statuses in which a run may need a worker; in any other its queue row is inactive.
CLAIMABLE = frozenset({"queued", "running"})
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_DELAY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_DEDUP_KEY = 200
NEVER = 253402300799.0  # 9999-12-31: "until woken" (a message wait without a deadline)


def check_queue_name(name: object) -> str:
    """``name`` if it can name a queue, else QueueError saying what can."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise QueueError(f"queue name {name!r} is not allowed: use 1 to 64 letters, digits "
                         "and . _ : - (starting with a letter or digit), e.g. 'default'")
    return name


def parse_delay(value: object) -> float:
    """A delay in seconds from a number or text such as ``"10s"``, ``"500ms"``, ``"5m"``,
    ``"2h"``, ``"1d"`` (a bare number is seconds). QueueError for anything else."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise QueueError(f"delay {value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DELAY.fullmatch(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise QueueError(f"delay {value!r} is not a duration: give seconds, or a number "
                         "with a unit: 500ms, 10s, 5m, 2h, 1d")
    if not 0 <= seconds < 10 * 365 * 86400:
        raise QueueError(f"delay {value!r} must be between 0 and ten years")
    return seconds


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """What a store records when a run is enqueued (see :func:`make_entry`)."""

    queue: str
    flow: str  # the flow's name: a worker serves the flows it was given, by name
    priority: int = 0
    delay: float = 0.0  # seconds from now, on the store's clock
    dedup_key: str | None = None


def make_entry(*, queue: str, flow: str, priority: int, delay: object,
               dedup_key: str | None) -> QueueEntry:
    """A checked :class:`QueueEntry`; QueueError names the bad option."""
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not -2**31 <= priority < 2**31:
        raise QueueError(f"priority must be a whole number (higher runs first), got "
                         f"{priority!r}")
    if dedup_key is not None and (not isinstance(dedup_key, str) or not dedup_key
                                  or len(dedup_key) > MAX_DEDUP_KEY):
        raise QueueError(f"dedup key must be a non-empty string of at most {MAX_DEDUP_KEY} "
                         f"characters, got {dedup_key!r}")
    return QueueEntry(check_queue_name(queue), flow, priority, parse_delay(delay), dedup_key)


class DuplicateEnqueue(Exception):
    """Raised inside an enqueue transaction (rolling it back) when the dedup key is
    taken: ``run_id`` is the run that holds it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker claimed: its lease (held by the claiming driver), its flow's name,
    how many times it was taken over from a worker that died, and what the claim's
    transaction journaled and read: the ``run.resumed`` event (``events``), the run's
    state after it (RUNNING; ``lease.next_seq`` follows the event), the step records of
    its next node execution, and whether someone asked the run to stop. A claim over its
    takeover limit journals nothing but the lease: ``state`` None, ``events`` empty."""

    run_id: str
    flow: str
    queue: str
    lease: Lease
    takeovers: int
    taken_over: bool  # this claim took the run from a lease that expired
    state: RunState | None = None
    events: list[PAEvent] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    cancel_requested: bool = False


def resume_commit(state: RunState, fence: int) -> Commit:
    """What a claim journals with the lease it takes, fenced by that lease: the run
    RUNNING (no longer waiting for anything) and its ``run.resumed`` event, seq 0 (the
    run's next seq, numbered inside the claim's transaction). Changes ``state`` so."""
    previous = state.status
    state.status, state.pending, state.error = RunStatus.RUNNING, None, None
    event = PAEvent(state.run_id, EventKind.RUN_RESUMED, seq=0, node=state.current_node,
                    payload={"previous": str(previous), "updated": [], "worker": True})
    return Commit(events=[event], state=state, delta=Delta({}), fence=fence)


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queued run's place in its queue, for listings."""

    run_id: str
    queue: str
    flow: str
    priority: int
    available_at: float
    enqueued_at: float
    dedup_key: str | None
    active: bool
    takeovers: int
    claims: int
    worker: str | None  # the worker that claimed it last

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A row of the ``workers`` table: a worker process and how it is doing."""

    id: str
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float
    in_flight: int
    concurrency: int
    queues: tuple[str, ...]
    flows: tuple[str, ...]
    stopped_at: float | None

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["queues"], out["flows"] = list(self.queues), list(self.flows)
        return out


def queue_row(r: tuple[Any, ...]) -> QueueRow:
    """A QueueRow from a ``queue`` table row, columns in declaration order."""
    return QueueRow(run_id=r[0], queue=r[1], flow=r[2], priority=int(r[3]),
                    available_at=float(r[4]), enqueued_at=float(r[5]), dedup_key=r[6],
                    active=bool(r[7]), takeovers=int(r[8]), claims=int(r[9]), worker=r[10])


def worker_info(r: tuple[Any, ...]) -> WorkerInfo:
    """A WorkerInfo from a ``workers`` table row, columns in declaration order."""
    return WorkerInfo(id=r[0], host=r[1], pid=int(r[2]), version=r[3],
                      started_at=float(r[4]), heartbeat_at=float(r[5]), in_flight=int(r[6]),
                      concurrency=int(r[7]), queues=tuple(json.loads(r[8])),
                      flows=tuple(json.loads(r[9])),
                      stopped_at=None if r[10] is None else float(r[10]))


class QueueStore(Protocol):
    """The queue operations of one store (SQLite or PostgreSQL)."""

    def now(self) -> float:
        """The store's clock, in epoch seconds (leases and delays are judged on it)."""
        ...

    def claim(self, *, owner: str, worker: str, queues: tuple[str, ...],
              flows: tuple[str, ...], ttl: float,
              takeover_limit: int | None = None) -> Claim | None:
        """Atomically take the lease of the next claimable run and, unless it was taken
        over more than ``takeover_limit`` times, journal its ``run.resumed`` and load it,
        all in one transaction (see :class:`Claim`); None when no run is claimable."""
        ...

    def set_active(self, run_id: str, active: bool) -> None:
        """Mark whether the run may need a worker (an index hint: its status decides)."""
        ...

    def set_available_at(self, run_id: str, at: float) -> None:
        """Make the run claimable from ``at`` (epoch seconds on the store's clock) on: a
        parked run's wake-up time (a timer, a message wait's deadline, a message)."""
        ...

    def queue_rows(self, run_ids: list[str] | None = None) -> dict[str, QueueRow]:
        ...

    def register_worker(self, info: WorkerInfo) -> None:
        ...

    def beat_worker(self, worker_id: str, in_flight: int) -> None:
        ...

    def stop_worker(self, worker_id: str) -> None:
        ...

    def list_workers(self) -> list[WorkerInfo]:
        ...

    def notify(self) -> None:
        """Hint waiting workers that a run became claimable (outside any transaction)."""
        ...


def queue_store(cp: BaseCheckpointer) -> QueueStore:
    """The queue operations of ``cp``: SQLite or PostgreSQL; QueueUnsupported otherwise."""
    from purpose_agent.runtime.checkpoint.sqlite import SQLiteCheckpointer

    if isinstance(cp, SQLiteCheckpointer):
        from purpose_agent.runtime.queue._sqlite import SQLiteQueue

        return SQLiteQueue(cp)
    if type(cp).__name__ == "PostgresCheckpointer":  # psycopg only when it is one
        from purpose_agent.runtime.queue._postgres import PostgresQueue

        return PostgresQueue(cp)  # type: ignore[arg-type]
    raise QueueUnsupported(
        f"{cp!r} cannot hold a run queue: queues and workers need a SQLite store "
        "(--db path/to/runs.db) or a PostgreSQL one (--db postgresql://user@host/db)")


__all__ = ["CLAIMABLE", "DEFAULT_QUEUE", "NEVER", "Claim", "DuplicateEnqueue", "QueueEntry", "QueueRow",
           "QueueStore", "WorkerInfo", "check_queue_name", "make_entry", "parse_delay",
           "queue_row", "queue_store", "resume_commit", "worker_info"]
