"""The store contract: :class:`BaseCheckpointer`, which every store (memory, JSONL, SQLite,
PostgreSQL) subclasses.

A store implements the abstract *storage primitives* and nothing else: how to write a
prepared commit, and how to read back what it wrote. Every rule lives here once: argument
meanings (``limit``, ``since_seq``, ``kinds``, ``status``), strict JSON before any write
and run-id validation (:mod:`._prepare`), the lease policy
(:meth:`PreparedCommit.lease_after`), snapshot + deltas replay, "the latest record of a
step key wins", which commit ``load_at`` returns, and the checks that what is read back
has no gap (event seqs contiguous, state versions consecutive). A class that lacks a
primitive cannot be constructed (``TypeError`` naming it), so a store missing one fails
when it is opened, not in the middle of a run.
"""

from __future__ import annotations

import asyncio
import operator
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import replace
from typing import Any

from purpose_agent.errors import LeaseError, RunNotFound, StoreCorrupted
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._arguments import (
    check_batch,
    check_finished,
    check_kinds,
    check_limit,
    check_since,
    check_ttl,
    run_query,
)
from purpose_agent.runtime.checkpoint._integrity import (
    DAMAGE,
    corrupted,
    decode_all,
    describe,
    header_problem,
    seq_gap,
    state_problem,
    step_problem,
    version_gap,
)
from purpose_agent.runtime.checkpoint._messages import Mailboxes
from purpose_agent.runtime.checkpoint._prepare import (
    MAX_RUN_ID,
    PreparedCommit,
    prepare,
    validate_run_id,
)
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import (
    Commit,
    CommitResult,
    Delta,
    Lease,
    RunInfo,
    RunQuery,
    StepRecord,
    apply_delta,
    sort_infos,
)
from purpose_agent.runtime.state import RunState, RunStatus


def _event_problem(data: dict[str, Any]) -> str:
    if type(data["kind"]) is not str:
        return f"its kind is {data['kind']!r}, not a name"
    return f"it belongs to run {data['run_id']!r}"


class BaseCheckpointer(Mailboxes, ABC):
    """A durable store of runs: their events, state history, step journal and lease.

    Guarantees shared by every store:

    - ``commit`` is atomic: all of a commit's events, state and step records land, or none.
    - Event ``seq`` per run starts at 1, is contiguous and strictly increasing.
    - Everything is stored as strict JSON; a bad value is refused before anything is written.
    - Run ids are validated (no path escapes, NUL, or over 128 characters).
    - What is read back is checked: a run's event seqs must follow each other and its
      state versions too, and every record must be one the store wrote. Damage raises
      ``StoreCorrupted`` naming where (file and line, or run and row); it is never
      skipped, so a lost commit cannot silently become a resumed run's past.
    - Arguments mean the same on every store (see :func:`check_limit` and its siblings).

    Writing a store: subclass this and implement every ``@abstractmethod`` below (the
    storage primitives). Call :func:`number_events` and :meth:`PreparedCommit.lease_after`
    from ``_write`` inside the store's transaction or lock; never decide a rule yourself.
    The behaviour suite (``tests/runtime/test_store_*.py``) runs against every store in
    ``tests/runtime/conftest.py``'s ``BACKENDS``: add the new store there.
    """

    # ── storage primitives: what a store implements ──────────────────────────────
    @abstractmethod
    def _write(self, run_id: str, prepared: PreparedCommit) -> CommitResult:
        """Write ``prepared`` atomically, durable on return, in one transaction (or under
        one lock) that first reads the run's lease and next seq: numbers its events with
        :func:`number_events`, takes the lease after it from
        :meth:`PreparedCommit.lease_after` on the store's clock, and returns
        :meth:`PreparedCommit.result`. Refuses with nothing written: RunStateError
        (:func:`refuse_existing`) when ``prepared.create`` finds the run, RunNotFound
        (:meth:`_not_found`) when ``prepared.must_exist`` does not. A commit with
        nothing to journal (only a lease change) writes only the lease."""

    @abstractmethod
    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        """The run's latest snapshot at or before ``max_version`` (None: the latest) as
        (version, JSON text of the state), or None."""

    @abstractmethod
    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        """The run's state commits with ``after`` < version <= ``upto`` (None: no upper
        bound), in version order, as (version, JSON text ``{"ops", "node", "node_state",
        "header"}``). Returned as stored: the base checks they follow each other."""

    @abstractmethod
    def _history(self, run_id: str) -> list[tuple[int, str]]:
        """Every state commit of the run in version order, as (version, JSON text holding
        at least its ``"node"`` and ``"header"``; the delta may be left out)."""

    @abstractmethod
    def _commits_at(self, run_id: str, step: int) -> list[tuple[int, str | None]]:
        """The run's state commits made at node execution ``step`` (the run's
        ``current_step`` then), as (version, the node they completed or None), in version
        order."""

    @abstractmethod
    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        """The run's events as decoded dicts, in seq order, in batches: from the batch
        holding seq ``since + 1`` (earlier ones may come too), to the end unless closed
        early. A store holding a read transaction keeps it until the generator ends or
        is closed."""

    @abstractmethod
    def _step_records(self, run_id: str, step: int) -> Iterable[tuple[Any, Callable[[], str]]]:
        """The run's journaled step records, decoded, in the order they were committed,
        each with a function naming where it is stored: at least every record of node
        execution ``step`` and every later record of the same keys (more may come; the
        base keeps the latest record of each key, then those of ``step``)."""

    @abstractmethod
    def _run_infos(self, query: RunQuery) -> Iterable[RunInfo]:
        """Run listings: at least the first ``query.limit`` runs (None: all) in the
        listing order that ``query`` matches, ordered or not; others may come too. The
        base filters, orders and cuts, so a store narrows with what it can index
        (status, the listing key) and need not apply every filter itself."""

    @abstractmethod
    def _renew_lease(self, run_id: str, owner: str, fence: int, ttl: float) -> float | None:
        """Move the lease's expiry to now + ``ttl`` (the store's clock) if ``owner`` still
        holds it under ``fence``; the new expiry, or None (nothing written) if not."""

    @abstractmethod
    def _request_cancel(self, run_id: str) -> bool:
        """Record that the run should stop at its next node boundary; False if no such run."""

    @abstractmethod
    def next_seq(self, run_id: str) -> int:
        """The seq the run's next event takes (1 for a run the store does not have)."""

    @abstractmethod
    def run_info(self, run_id: str) -> RunInfo | None:
        """The run's listing (header, lease, cancel request), or None if there is no run."""

    @abstractmethod
    def delete_run(self, run_id: str) -> bool:
        """Delete the run and everything journaled for it. True if it existed."""

    def clock(self) -> float:
        """The store's clock in epoch seconds: wake-up times and deadlines are judged on
        it (a database server's clock, for a store shared between machines)."""
        return time.time()

    def _where(self, run_id: str, what: str, key: Any) -> str:
        """Where run ``run_id``'s ``what`` number ``key`` is stored (``seq``, ``version``,
        ``snapshot``, ``steps``: a node execution, ``header``: the run), for an error
        message: a store names its file and line, or its table and row. Called only
        when something there is damaged."""
        return f"{self!r}, run {run_id!r}, {what} {key}"

    def _not_found(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run {run_id!r} in {self!r}")

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
        """Run ids, newest first, filtered by status when given (ValueError if unknown)."""
        return [info.run_id for info in self.list_run_infos(status=status)]

    # ── the engine's needs ───────────────────────────────────────────────────────
    def commit(self, run_id: str, commit: Commit) -> CommitResult:
        """Write ``commit`` atomically; durable when this returns.

        Raises LeaseError (nothing written) if ``commit.fence`` is no longer the run's
        lease, SeqConflictError on a seq gap or duplicate, RunBusyError when
        ``commit.acquire`` finds another live owner, RunStateError when ``commit.create``
        finds the run already exists.

        The commit's time is the run's ``updated_at``: stored with it, and set on
        ``commit.state`` once the commit has landed (a refused commit leaves it as it was).
        """
        now = time.time()
        result = self._write(run_id, prepare(run_id, commit, now=now))
        if commit.state is not None:
            commit.state.updated_at = now
        return result

    async def acommit(self, run_id: str, commit: Commit) -> CommitResult:
        """:meth:`commit` for a task: durable when the await returns, and the event loop
        is not held while it is made durable (other tasks run meanwhile). The same
        errors, raised the same way."""
        now = time.time()
        result = await self._awrite(run_id, prepare(run_id, commit, now=now))
        if commit.state is not None:
            commit.state.updated_at = now
        return result

    async def _awrite(self, run_id: str, prepared: PreparedCommit) -> CommitResult:
        """:meth:`_write` without holding the event loop: in a thread of the loop's
        default executor. A store with a way of its own (a group commit, no I/O at all)
        overrides it. A cancelled task still waits for the write to end, so the store
        is as the write left it once the cancellation is seen."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._write, run_id, prepared)
        cancelled = False
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return future.result()

    def load_at(self, run_id: str, step: int) -> RunState | None:
        """The state right after node execution number ``step`` committed (0: the start),
        or None if it never did: the first state commit of that execution that completed
        a node (at step 0, the first commit)."""
        step = operator.index(step)
        for version, node in self._commits_at(validate_run_id(run_id), step):
            if node is not None or step == 0:
                return self._replay(run_id, version)
        return None

    def load_steps(self, run_id: str, step: int) -> list[StepRecord]:
        """The journaled steps of node execution ``step``, in the order they were called.
        A key recorded again (a started at-most-once step, then its result) is its latest
        record; a damaged record raises StoreCorrupted naming where it is."""
        validate_run_id(run_id)
        step = operator.index(step)
        return self._steps_from(self._step_records(run_id, step), step)

    def _steps_from(self, records: Iterable[tuple[Any, Callable[[], str]]],
                    step: int) -> list[StepRecord]:
        """:meth:`load_steps` of records a store read (:meth:`_step_records`, or itself)."""
        latest: dict[str, dict[str, Any]] = {}
        for data, where in records:
            problem = step_problem(data)
            if problem is not None:
                raise corrupted(where(), problem)
            latest[data["key"]] = data
        return sorted((StepRecord.from_dict(data) for data in latest.values()
                       if data["step"] == step), key=lambda r: r.index)

    def list_run_infos(self, *, status: RunStatus | str | None = None,
                       flow: str | None = None, search: str | None = None,
                       after: RunInfo | tuple[float, str] | None = None,
                       limit: int | None = None) -> list[RunInfo]:
        """Run listings, newest first (ties by run id, descending): of ``status``, of
        ``flow``, whose run id contains ``search`` (case-sensitive), each when given, at
        most ``limit`` (see :func:`check_limit`).

        Paging by key: pass the last listing of a page as ``after`` (or its
        ``(updated_at, run_id)``) for the runs after it. Pages read this way never
        repeat or skip a run that was not updated meanwhile (a run updated between two
        pages moves to the top: it is listed again on a first page, not on a later
        one). SQLite and PostgreSQL filter, order and cut in SQL, so a page costs a page
        however many runs the store holds; JSONL reads every run's header."""
        query = run_query(status=status, flow=flow, search=search, after=after, limit=limit)
        if query.limit == 0:
            return []
        return sort_infos(self._run_infos(query), query)

    def acquire_lease(self, run_id: str, owner: str, ttl: float) -> Lease:
        """Take the run's lease for ``owner`` for ``ttl`` seconds, with a new fence.
        RunBusyError (nothing written) while another owner holds it live; RunNotFound
        if there is no such run."""
        prepared = prepare(run_id, Commit(acquire=(owner, check_ttl(ttl))))
        prepared.must_exist = True
        lease = self._write(run_id, prepared).lease
        assert lease is not None
        return lease

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        """Extend a held lease to ``ttl`` seconds from now; LeaseError (nothing written)
        if another owner has taken the run since."""
        expires = self._renew_lease(validate_run_id(lease.run_id), lease.owner, lease.fence,
                                    check_ttl(ttl))
        if expires is None:
            raise LeaseError(f"lease on run {lease.run_id!r} was lost to another owner")
        return replace(lease, expires_at=expires)

    def request_cancel(self, run_id: str) -> None:
        """Ask the run's live owner to stop at its next node boundary (it sees the request
        in its next commit's result); RunNotFound if there is no such run."""
        if not self._request_cancel(validate_run_id(run_id)):
            raise self._not_found(run_id)

    def prune_runs(self, *, updated_before: float,
                   statuses: Iterable[RunStatus | str] | None = None,
                   batch: int = 500) -> int:
        """Delete the finished runs last updated before ``updated_before`` (epoch seconds),
        everything journaled for them included, and return how many were deleted.

        ``statuses``: which finished runs (default: completed, failed and cancelled);
        a status of a run that is not finished is a ValueError, so a running, paused or
        pending run is never pruned, however old. Runs are deleted ``batch`` at a time,
        each batch in one transaction of its own: a large store is pruned without one
        long transaction that would hold up its writers.
        """
        wanted, batch = check_finished(statuses), check_batch(batch)
        cutoff = float(updated_before)
        total = 0
        while True:
            deleted = self._prune_batch(cutoff, wanted, batch)
            total += deleted
            if deleted < batch:
                return total

    def _prune_batch(self, updated_before: float, statuses: frozenset[RunStatus],
                     batch: int) -> int:
        """Delete at most ``batch`` runs of ``statuses`` last updated before
        ``updated_before``; how many were deleted. This one lists the runs and deletes
        them one by one; a store that can do it in one transaction overrides it."""
        doomed = [info.run_id for info in self._run_infos(RunQuery())
                  if info.status in statuses and info.updated_at < updated_before][:batch]
        return sum(self.delete_run(run_id) for run_id in doomed)

    def close(self) -> None:
        """Release what the store holds open (connections, a pool); idempotent. The
        base holds nothing: a store that opens something overrides this."""
        return None

    def __enter__(self) -> BaseCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── reading back, checked ────────────────────────────────────────────────────
    def list_events(self, run_id: str, since_seq: int = 0, *, kinds: Any = None,
                    limit: int | None = None) -> list[PAEvent]:
        """Events with ``seq > since_seq`` in seq order, optionally of some kinds only,
        at most ``limit`` of them (see :func:`check_limit` for what each argument means).

        The seqs read must follow each other from ``since_seq + 1`` on: a gap or a damaged
        event raises StoreCorrupted (naming where) rather than being skipped.
        """
        validate_run_id(run_id)
        since, wanted, limit = check_since(since_seq), check_kinds(kinds), check_limit(limit)
        if limit == 0:
            return []
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

    def list_history(self, run_id: str) -> list[dict[str, Any]]:
        """Every state commit of the run, oldest first: version, step, node, status, time."""
        out = []
        for version, body in self._consecutive(run_id, self._history(validate_run_id(run_id)),
                                               first=1):
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
                raise self._damaged_commit(run_id, version, problem)
            out.append(entry)
        return out

    def _replay(self, run_id: str, upto: int | None) -> RunState | None:
        """The state at version ``upto`` (None: the latest): the latest snapshot at or
        before it plus the deltas after that, which must be the versions right after the
        snapshot's, one by one (StoreCorrupted otherwise: a missing commit would silently
        drop a node's update)."""
        snap = self._latest_snapshot(run_id, upto)
        return self._replay_rows(run_id, snap, self._deltas(
            run_id, snap[0] if snap is not None else 0, upto))

    def _replay_rows(self, run_id: str, snap: tuple[int, str] | None,
                     rows: list[tuple[int, str]]) -> RunState | None:
        """:meth:`_replay` of a snapshot (or None) and the state commits after it that
        a store read itself, in a transaction of its own (a queue's claim)."""
        after, state = 0, None
        if snap is not None:
            after = snap[0]
            state = self._decode_snapshot(run_id, after, snap[1])
        header: Any = None
        version = after
        for version, body in self._consecutive(run_id, rows, first=after + 1):
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
                raise self._damaged_commit(run_id, version, problem)
        problem = None if header is None else header_problem(header, run_id)
        if problem is not None:
            raise self._damaged_commit(run_id, version, problem)
        return state

    def _consecutive(self, run_id: str, rows: list[tuple[int, str]],
                     first: int) -> Iterator[tuple[int, Any]]:
        """``rows`` of state commits, decoded, checked to be versions ``first``, ``first +
        1`` … one by one (StoreCorrupted naming the first that is not, or is not JSON)."""
        bodies = decode_all([text for _v, text in rows],
                            lambda i: self._where(run_id, "version", rows[i][0]))
        for expected, ((version, _text), body) in enumerate(zip(rows, bodies, strict=True),
                                                            start=first):
            if version != expected:
                raise corrupted(self._where(run_id, "version", version),
                                version_gap(expected, version))
            yield version, body

    def _damaged_commit(self, run_id: str, version: int, problem: str) -> StoreCorrupted:
        return corrupted(self._where(run_id, "version", version),
                         f"the commit of state version {version} is damaged: {problem}")

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


__all__ = ["MAX_RUN_ID", "BaseCheckpointer", "validate_run_id"]
