"""A commit checked and encoded before any store writes it, and the rules every store's
write applies the same way: event numbering, the lease a commit leaves behind.

Nothing here does I/O. A store's ``_write`` takes a :class:`PreparedCommit`, reads what it
holds of the run, and asks the commit what follows (:func:`number_events`,
:meth:`PreparedCommit.lease_after`): the store stores, the rules live here once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from purpose_agent.errors import (
    InvalidRunId,
    LeaseError,
    RunStateError,
    SeqConflictError,
    SerializationError,
)
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import (
    Commit,
    CommitResult,
    Delta,
    Lease,
    StepRecord,
    check_lease_free,
)
from purpose_agent.runtime.state import RunState

MAX_RUN_ID = 128
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@=+-]*")


def validate_run_id(run_id: object) -> str:
    """Return ``run_id`` if it is safe as a key and a file name, else raise InvalidRunId."""
    if not isinstance(run_id, str) or not run_id:
        raise InvalidRunId(f"run id must be a non-empty string, got {run_id!r}")
    if len(run_id) > MAX_RUN_ID:
        raise InvalidRunId(f"run id is {len(run_id)} characters; the limit is {MAX_RUN_ID}")
    if not _RUN_ID.fullmatch(run_id):
        raise InvalidRunId(
            f"run id {run_id!r} is not allowed: use letters, digits and . _ : @ = + - "
            "(starting with a letter or digit; no '/', '..' prefixes, NUL or spaces)"
        )
    return run_id


@dataclass(slots=True)
class PreparedCommit:
    """A commit encoded to JSON text, ready for a backend to write in one transaction."""

    events: list[PAEvent]
    header: dict[str, Any] | None
    header_json: str | None
    delta_json: str | None  # the delta with the header spliced in, as replay reads it
    snapshot_json: str | None
    step: int
    node: str | None
    steps: list[tuple[StepRecord, str]] = field(default_factory=list)
    fence: int | None = None
    release: bool = False
    create: bool = False
    acquire: tuple[str, float] | None = None
    event_json: list[str] = field(default_factory=list)  # one text per event, as given
    ops_json: str | None = None  # the delta without the header (stores keeping it apart)
    must_exist: bool = False  # RunNotFound rather than creating the run (acquire_lease)
    enqueue: Any = None  # a runtime.queue.QueueEntry to write with the run (see Commit)

    def event_texts(self, numbered: list[PAEvent]) -> list[str]:
        """The JSON of ``numbered`` (``events`` after numbering), encoding again only
        the events that numbering gave a new seq."""
        if len(self.event_json) != len(numbered):
            return [event.to_json() for event in numbered]
        return [text if event is given else event.to_json()
                for event, given, text in zip(numbered, self.events, self.event_json,
                                              strict=True)]

    def lease_after(self, run_id: str, held: Held, now: float) -> Held:
        """The run's lease once this commit lands, from the one it has (``held``), judged
        at ``now`` on the store's clock. The lease policy of every store:

        - a commit carrying a fence writes only while that fence is the run's (else
          LeaseError: another owner took the run since);
        - acquiring succeeds when the lease is free, expired, its owner's process is gone,
          or the acquirer already holds it (else RunBusyError), and bumps the fence;
        - releasing clears the owner and expiry, keeping the fence.
        """
        if self.fence is not None and self.fence != held.fence:
            raise LeaseError(
                f"run {run_id!r} was taken over by another owner (lease {held.fence}, this "
                f"writer holds {self.fence}); this process must stop advancing it")
        if self.acquire is not None:
            owner, ttl = self.acquire
            check_lease_free(run_id, held.owner, held.expires_at, now, owner)
            held = Held(owner, now + ttl, held.fence + 1)
        if self.release:
            held = Held(None, None, held.fence)
        return held

    def result(self, run_id: str, events: list[PAEvent], held: Held, next_seq: int,
               cancel_requested: bool = False) -> CommitResult:
        """What the commit reports: its numbered events and, when it acquired the lease,
        that lease (``held`` after it, ``next_seq`` the run's next seq after it)."""
        lease = None
        if self.acquire is not None:
            assert held.owner is not None and held.expires_at is not None
            lease = Lease(run_id, held.owner, held.fence, held.expires_at, next_seq)
        return CommitResult(
            events=events, lease=lease, cancel_requested=bool(cancel_requested),
            delta_bytes=len(self.delta_json or ""),
            snapshot_bytes=len(self.snapshot_json or ""),
        )


class Held(NamedTuple):
    """A run's lease as a store keeps it: no owner (and no expiry) when it is free."""

    owner: str | None
    expires_at: float | None
    fence: int


def prepare(run_id: str, commit: Commit, *, now: float | None = None) -> PreparedCommit:
    """Check and encode everything; raises SerializationError before any write. Changes
    nothing it is given: the state is encoded with ``updated_at`` = ``now`` when given
    (the time of the commit, see :meth:`BaseCheckpointer.commit`), else as it is."""
    validate_run_id(run_id)
    event_json = []
    for event in commit.events:
        if event.run_id != run_id:
            raise ValueError(f"event for run {event.run_id!r} committed to run {run_id!r}")
        try:
            event_json.append(event.to_json())
        except SerializationError:  # again, to name the event in the error
            jsonutil.dumps(event.to_dict(), f"$.events[{event.seq}]")
            raise
    header = header_json = delta_json = snapshot_json = ops_json = None
    step, node = 0, None
    state = commit.state
    if state is not None:
        if state.run_id != run_id:
            raise ValueError(f"state of run {state.run_id!r} committed to run {run_id!r}")
        header = state.header()
        if now is not None:
            header["updated_at"] = now
        header_json = jsonutil.dumps(header, "$.state")
        delta = commit.delta or Delta()
        step, node = state.current_step, delta.node
        # The header is already encoded: splice it in rather than check and encode it
        # twice (the body reads {"ops":..,"node":..,"node_state":..,"header":..}).
        ops_json = delta.to_json("$.update")
        delta_json = splice_header(ops_json, header_json)
        if commit.snapshot:
            whole = state.to_dict()
            whole["updated_at"] = header["updated_at"]
            snapshot_json = jsonutil.dumps(whole, "$.state")
    steps = [(rec, rec.to_json()) for rec in commit.steps]
    return PreparedCommit(
        events=list(commit.events), header=header, header_json=header_json,
        delta_json=delta_json, snapshot_json=snapshot_json, step=step, node=node,
        steps=steps, fence=commit.fence, release=commit.release, create=commit.create,
        acquire=commit.acquire, event_json=event_json, ops_json=ops_json,
        enqueue=commit.enqueue,
    )


def splice_header(ops_json: str, header_json: str) -> str:
    """The journaled body of a state commit: its delta object with the header added."""
    return f'{ops_json[:-1]},"header":{header_json}}}'


def minimal_header(run_id: str) -> dict[str, Any]:
    """The header of a run known only through ``save_event``."""
    now = time.time()
    return RunState(run_id=run_id, created_at=now, updated_at=now).header()


def number_events(run_id: str, events: list[PAEvent], next_seq: int) -> list[PAEvent]:
    """Give seq-less events the next seqs; refuse any seq that is not the next one."""
    out = []
    for event in events:
        if event.seq in (0, None):
            event = replace(event, seq=next_seq)
        elif event.seq != next_seq:
            raise SeqConflictError(
                f"event seq {event.seq} for run {run_id!r} would leave a "
                f"{'duplicate' if event.seq < next_seq else 'gap'}: the next seq is {next_seq} "
                "(pass seq=0 to take the next one)"
            )
        out.append(event)
        next_seq += 1
    return out


def refuse_existing(run_id: str) -> RunStateError:
    return RunStateError(
        f"a run with id {run_id!r} already exists; resume it, or start a new run with "
        "another id"
    )


