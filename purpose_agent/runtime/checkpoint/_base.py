"""What every backend shares: validation, encoding, and loading state from the journal.

A backend subclasses :class:`BaseCheckpointer` and implements the ``_``-prefixed storage
primitives; all policy (strict JSON before any write, run-id validation, snapshot +
deltas replay, and the check that what is read back has no gap: event seqs contiguous,
state versions consecutive) lives here once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from purpose_agent.errors import (
    InvalidRunId,
    RunStateError,
    SeqConflictError,
    SerializationError,
)
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._integrity import (
    DAMAGE,
    corrupted,
    decode_all,
    describe,
    header_problem,
    seq_gap,
    state_problem,
    version_gap,
)
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import (
    Commit,
    CommitResult,
    Delta,
    Lease,
    RunInfo,
    StepRecord,
    apply_delta,
    sort_infos,
)
from purpose_agent.runtime.state import RunState, RunStatus

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
    enqueue: Any = None  # a runtime.queue.QueueEntry to write with the run (see Commit)

    def event_texts(self, numbered: list[PAEvent]) -> list[str]:
        """The JSON of ``numbered`` (``events`` after numbering), encoding again only
        the events that numbering gave a new seq."""
        if len(self.event_json) != len(numbered):
            return [event.to_json() for event in numbered]
        return [text if event is given else event.to_json()
                for event, given, text in zip(numbered, self.events, self.event_json,
                                              strict=True)]

    def result(self, events: list[PAEvent], lease: Lease | None = None,
               cancel_requested: bool = False) -> CommitResult:
        return CommitResult(
            events=events, lease=lease, cancel_requested=cancel_requested,
            delta_bytes=len(self.delta_json or ""),
            snapshot_bytes=len(self.snapshot_json or ""),
        )


def prepare(run_id: str, commit: Commit) -> PreparedCommit:
    """Check and encode everything; raises SerializationError before any write."""
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
        state.updated_at = time.time()
        header = state.header()
        header_json = jsonutil.dumps(header, "$.state")
        delta = commit.delta or Delta()
        step, node = state.current_step, delta.node
        # The header is already encoded: splice it in rather than check and encode it
        # twice (the body reads {"ops":..,"node":..,"node_state":..,"header":..}).
        ops_json = delta.to_json("$.update")
        delta_json = splice_header(ops_json, header_json)
        if commit.snapshot:
            snapshot_json = jsonutil.dumps(state.to_dict(), "$.state")
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


def kinds_filter(kinds: Any) -> set[str] | None:
    if kinds is None:
        return None
    if isinstance(kinds, (str, EventKind)):
        kinds = [kinds]
    return {str(k) for k in kinds}


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


def _event_problem(data: dict[str, Any]) -> str:
    if type(data["kind"]) is not str:
        return f"its kind is {data['kind']!r}, not a name"
    return f"it belongs to run {data['run_id']!r}"


def refuse_existing(run_id: str) -> RunStateError:
    return RunStateError(
        f"a run with id {run_id!r} already exists; resume it, or start a new run with "
        "another id"
    )


class BaseCheckpointer:
    """Shared behaviour of every store; backends implement the storage primitives."""

    # ── primitives a backend implements ──────────────────────────────────────────
    def _write(self, run_id: str, prepared: PreparedCommit) -> CommitResult:
        raise NotImplementedError

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        raise NotImplementedError

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        raise NotImplementedError

    def _node_version(self, run_id: str, step: int) -> int | None:
        """Version of the commit that completed node execution number ``step``."""
        raise NotImplementedError

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        raise NotImplementedError

    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        """The run's events as decoded dicts, in seq order, in batches: from the batch
        holding seq ``since + 1`` (earlier ones may come too), to the end unless closed
        early. A backend holding a read transaction keeps it until the generator ends
        or is closed."""
        raise NotImplementedError

    def _where(self, run_id: str, what: str, key: Any) -> str:
        """Where run ``run_id``'s ``what`` number ``key`` is stored (``seq``, ``version``,
        ``snapshot``, ``steps``: a node execution, ``header``: the run), for an error
        message: a backend names its file and line, or its table and row. Called only
        when something there is damaged."""
        return f"{self!r}, run {run_id!r}, {what} {key}"

    # ── the seed contract ────────────────────────────────────────────────────────
    def save_event(self, event: PAEvent) -> PAEvent:
        """Append one event. ``seq=0`` takes the next free seq; any other must be it.

        Returns the event as stored (with its seq).
        """
        return self._write(event.run_id, prepare(event.run_id, Commit(events=[event]))).events[0]

    def save_snapshot(self, run_id: str, state: RunState) -> None:
        """Store a full copy of ``state`` as the run's latest state (durable on return)."""
        self.commit(run_id, Commit(state=state, snapshot=True))

    def load_latest(self, run_id: str) -> RunState | None:
        """The run's current state (a fresh copy), or None if the store has no state for it."""
        return self._replay(validate_run_id(run_id), None)

    def list_runs(self, status: RunStatus | str | None = None) -> list[str]:
        """Run ids, newest first, filtered by status when given."""
        return [info.run_id for info in self.list_run_infos(status=status)]

    # ── the engine's needs ───────────────────────────────────────────────────────
    def commit(self, run_id: str, commit: Commit) -> CommitResult:
        """Write ``commit`` atomically; durable when this returns.

        Raises LeaseError (nothing written) if ``commit.fence`` is no longer the run's
        lease, SeqConflictError on a seq gap or duplicate, RunBusyError when
        ``commit.acquire`` finds another live owner, RunStateError when ``commit.create``
        finds the run already exists.
        """
        return self._write(run_id, prepare(run_id, commit))

    def load_at(self, run_id: str, step: int) -> RunState | None:
        """The state right after node execution number ``step`` committed (0: the start)."""
        validate_run_id(run_id)
        version = self._node_version(run_id, step)
        return None if version is None else self._replay(run_id, version)

    def list_history(self, run_id: str) -> list[dict[str, Any]]:
        """Every state commit of the run, oldest first: version, step, node, status, time."""
        out = []
        rows = self._history(validate_run_id(run_id))
        bodies = decode_all([text for _v, text in rows],
                            lambda i: self._where(run_id, "version", rows[i][0]))
        expected = 1
        for (version, _text), body in zip(rows, bodies, strict=True):
            if version != expected:
                raise corrupted(self._where(run_id, "version", version),
                                version_gap(expected, version))
            try:
                header = body["header"]
                entry = {"version": version, "step": header["current_step"],
                         "node": body.get("node"), "status": header["status"],
                         "current_node": header.get("current_node"),
                         "updated_at": header["updated_at"]}
                problem = None if (type(entry["step"]) is int and type(entry["status"]) is str
                                   and type(entry["updated_at"]) in (int, float)) \
                    else header_problem(header, run_id)
            except DAMAGE as exc:
                problem = describe(exc)
            if problem is not None:
                raise corrupted(self._where(run_id, "version", version),
                                f"the commit of state version {version} is damaged: {problem}")
            out.append(entry)
            expected += 1
        return out

    def _replay(self, run_id: str, upto: int | None) -> RunState | None:
        """The state at version ``upto`` (None: the latest): the latest snapshot at or
        before it plus the deltas after that, which must be the versions right after the
        snapshot's, one by one (StoreCorrupted otherwise: a missing commit would silently
        drop a node's update)."""
        snap = self._latest_snapshot(run_id, upto)
        after, state = 0, None
        if snap is not None:
            after = snap[0]
            state = self._decode_snapshot(run_id, after, snap[1])
        deltas = self._deltas(run_id, after, upto)
        bodies = decode_all([text for _v, text in deltas],
                            lambda i: self._where(run_id, "version", deltas[i][0]))
        expected = after + 1
        header: Any = None
        for (version, _text), body in zip(deltas, bodies, strict=True):
            if version != expected:
                raise corrupted(self._where(run_id, "version", version),
                                version_gap(expected, version))
            try:
                header = body["header"]
                node = body.get("node")
                # Each header replaces the last one's fields, so only the last one reaches
                # the state and is checked field by field (below); an earlier one must be
                # this run's, and apply_header checks its status and step.
                problem = (None if type(header) is dict and header.get("run_id") == run_id
                           else header_problem(header, run_id))
                if problem is None and node is not None and type(node) is not str:
                    problem = f"its node is {node!r}, not a name"
                if problem is None and type(body.get("ops", {})) is not dict:
                    problem = "its data operations are not an object"
                if problem is None:
                    if state is None:
                        state = RunState(run_id=run_id)
                    apply_delta(state, Delta.from_dict(body), header)
            except DAMAGE as exc:
                problem = describe(exc)
            if problem is not None:
                raise corrupted(self._where(run_id, "version", version),
                                f"the commit of state version {version} is damaged: {problem}")
            expected += 1
        problem = None if header is None else header_problem(header, run_id)
        if problem is not None:
            raise corrupted(self._where(run_id, "version", expected - 1),
                            f"the commit of state version {expected - 1} is damaged: {problem}")
        return state

    def _decode_snapshot(self, run_id: str, version: int, text: str) -> RunState:
        try:
            data = jsonutil.loads(text)
            problem = state_problem(data, run_id)
            if problem is None:
                return RunState.from_dict(data)
        except DAMAGE as exc:
            problem = describe(exc)
        raise corrupted(self._where(run_id, "snapshot", version),
                        f"the snapshot of state version {version} is damaged: {problem}")

    def list_events(self, run_id: str, since_seq: int = 0, *, kinds: Any = None,
                    limit: int | None = None) -> list[PAEvent]:
        """Events with ``seq > since_seq`` in seq order, optionally of some kinds only,
        at most ``limit`` of them.

        The seqs read must follow each other from ``since_seq + 1`` on: a gap or a damaged
        event raises StoreCorrupted (naming where) rather than being skipped.
        """
        validate_run_id(run_id)
        since = max(int(since_seq), 0)
        wanted = kinds_filter(kinds)
        if limit is not None:
            limit = int(limit)
            if limit == 0:
                return []
            if limit < 0:  # as SQL's LIMIT -1
                limit = None
        out: list[PAEvent] = []
        expected = since + 1
        batches = self._event_batches(run_id, since)
        try:
            for batch in batches:
                for data in batch:
                    seq = data["seq"]
                    if seq <= since:
                        continue
                    if seq != expected:
                        raise corrupted(self._where(run_id, "seq", seq),
                                        seq_gap(expected, seq))
                    kind = data["kind"]
                    if data["run_id"] != run_id or type(kind) is not str:
                        raise corrupted(self._where(run_id, "seq", seq),
                                        f"event seq {seq} is damaged: {_event_problem(data)}")
                    expected += 1
                    if wanted is None or kind in wanted:
                        out.append(PAEvent.from_dict(data))
                        if limit is not None and len(out) >= limit:
                            return out
        except DAMAGE as exc:
            raise corrupted(self._where(run_id, "seq", expected),
                            f"the event with seq {expected} is damaged: {describe(exc)}") from exc
        finally:
            batches.close()
        return out

    # Subclasses provide: next_seq, run_info, list_run_infos, load_steps, delete_run,
    # acquire_lease, renew_lease, close.

    def list_run_infos(self, *, status: RunStatus | str | None = None,
                       limit: int | None = None) -> list[RunInfo]:
        return sort_infos(self._all_infos(), status, limit)

    def _all_infos(self) -> Iterable[RunInfo]:
        raise NotImplementedError

    def __enter__(self) -> BaseCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden where there is something to close
        pass

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        raise NotImplementedError
