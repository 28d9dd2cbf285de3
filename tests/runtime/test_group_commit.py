"""Group commit in the SQLite store: concurrent commits of one process share one
transaction and one fsync, and each stays atomic and isolated inside it.

A batch is written by ``SQLiteCheckpointer._write_batch``; the isolation tests hand it
a batch made by hand (so its make-up is certain), the others drive real threads and
tasks and check what the store holds afterwards.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from itertools import pairwise
from pathlib import Path

import pytest

from purpose_agent import END, Flow
from purpose_agent.errors import (
    LeaseError,
    RunStateError,
    SeqConflictError,
    SerializationError,
    StoreError,
)
from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
from purpose_agent.runtime.checkpoint._group_commit import Pending
from purpose_agent.runtime.checkpoint._prepare import prepare
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit
from purpose_agent.runtime.state import RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS


def started(cp: SQLiteCheckpointer, run_id: str) -> int:
    """A new running run with a lease; its fence."""
    state = RunState(run_id=run_id, status=RunStatus.RUNNING)
    result = cp.commit(run_id, Commit(events=[create_event(run_id, PROGRESS)], state=state,
                                      create=True, acquire=(f"owner-{run_id}", 60.0)))
    assert result.lease is not None
    return result.lease.fence


def pending(run_id: str, commit: Commit) -> Pending:
    return Pending(run_id, prepare(run_id, commit))


def progress(run_id: str, fence: int | None, **payload: object) -> Commit:
    return Commit(events=[create_event(run_id, PROGRESS, **payload)], fence=fence)


def seqs(cp: SQLiteCheckpointer, run_id: str) -> list[int]:
    return [e.seq for e in cp.list_events(run_id)]


def test_one_refused_commit_in_a_batch_fails_alone(tmp_path: Path) -> None:
    """A stale fence, a seq conflict and a run that exists already, in one batch with
    good commits: each refused commit gets its own error and writes nothing, its
    neighbours commit (one savepoint per commit; without them the whole batch fails)."""
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    fences = {run: started(cp, run) for run in ("a", "b", "c", "d", "e")}
    batch = [
        pending("a", progress("a", fences["a"], n=1)),
        pending("b", progress("b", fences["b"] + 1)),  # another owner's fence: LeaseError
        pending("c", progress("c", fences["c"], n=1)),
        pending("d", Commit(events=[create_event("d", PROGRESS, seq=7)], fence=fences["d"])),
        pending("e", Commit(state=RunState(run_id="e"), create=True)),  # exists already
        pending("new", Commit(events=[create_event("new", PROGRESS)],
                              state=RunState(run_id="new"), create=True)),
        pending("a", progress("a", fences["a"], n=2)),  # the same run again, after its first
    ]
    cp._write_batch(batch)
    assert [type(i.error) if i.error else None for i in batch] == [
        None, LeaseError, None, SeqConflictError, RunStateError, None, None]
    assert [i.result is not None for i in batch] == [True, False, True, False, False, True,
                                                     True]
    assert seqs(cp, "a") == [1, 2, 3]
    assert seqs(cp, "b") == [1] and seqs(cp, "d") == [1] and seqs(cp, "e") == [1]
    assert seqs(cp, "c") == [1, 2] and seqs(cp, "new") == [1]
    # What landed is on disk: another connection sees it.
    cp.close()
    assert seqs(SQLiteCheckpointer(tmp_path / "runs.db"), "a") == [1, 2, 3]


def test_a_failure_that_ends_the_transaction_fails_the_whole_batch(tmp_path: Path) -> None:
    """When SQLite itself rolls the transaction back (here a trigger's RAISE(ROLLBACK);
    a full disk or an I/O error do the same), every commit of the batch fails: none is
    told it landed, nothing of the batch is in the store, and the store goes on."""
    path = tmp_path / "runs.db"
    cp = SQLiteCheckpointer(path)
    fences = {run: started(cp, run) for run in ("a", "b", "c")}
    raw = sqlite3.connect(path)
    raw.execute("CREATE TRIGGER boom AFTER INSERT ON journal WHEN NEW.events LIKE "
                "'%\"boom\"%' BEGIN SELECT RAISE(ROLLBACK, 'boom'); END")
    raw.commit()
    raw.close()
    batch = [pending("a", progress("a", fences["a"])),
             pending("b", progress("b", fences["b"], word="boom")),
             pending("c", progress("c", fences["c"]))]
    cp._write_batch(batch)
    assert all(isinstance(i.error, StoreError) and i.result is None for i in batch)
    assert "boom" in str(batch[0].error)
    assert seqs(cp, "a") == [1] and seqs(cp, "c") == [1]
    cp.commit("a", progress("a", fences["a"]))
    assert seqs(cp, "a") == [1, 2]


def test_a_statement_error_in_one_commit_spares_its_neighbours(tmp_path: Path) -> None:
    """A commit whose statement fails (a trigger's RAISE(ABORT), as a constraint would)
    is rolled back to its savepoint; the rest of the batch commits."""
    path = tmp_path / "runs.db"
    cp = SQLiteCheckpointer(path)
    fences = {run: started(cp, run) for run in ("a", "b", "c")}
    raw = sqlite3.connect(path)
    raw.execute("CREATE TRIGGER boom AFTER INSERT ON journal WHEN NEW.events LIKE "
                "'%\"boom\"%' BEGIN SELECT RAISE(ABORT, 'boom'); END")
    raw.commit()
    raw.close()
    batch = [pending("a", progress("a", fences["a"])),
             pending("b", progress("b", fences["b"], word="boom")),
             pending("c", progress("c", fences["c"]))]
    cp._write_batch(batch)
    assert batch[0].error is None and batch[2].error is None
    assert isinstance(batch[1].error, StoreError) and "boom" in str(batch[1].error)
    assert seqs(cp, "a") == [1, 2] and seqs(cp, "b") == [1] and seqs(cp, "c") == [1, 2]


class Recording(SQLiteCheckpointer):
    """Records which runs each batch held, once the batch's transaction has committed,
    and which threads wrote batches."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.durable: set[tuple[str, int]] = set()
        self.writers: set[int] = set()
        self.sizes: list[int] = []

    def _write_batch(self, batch: list[Pending]) -> None:
        super()._write_batch(batch)
        self.writers.add(threading.get_ident())
        self.sizes.append(len(batch))
        for item in batch:
            if item.result is not None:
                self.durable.update((item.run_id, e.seq) for e in item.result.events)


def test_concurrent_threads_share_fsyncs_and_nobody_is_told_early(tmp_path: Path) -> None:
    """32 threads commit 40 times each, some with a stale fence: every good commit is
    told it landed only after the transaction holding it committed, the stale ones get
    LeaseError, and fewer transactions than commits were written."""
    cp = Recording(tmp_path / "runs.db")
    runs = [f"r{i}" for i in range(32)]
    fences = {run: started(cp, run) for run in runs}
    barrier = threading.Barrier(len(runs))
    problems: list[str] = []

    def work(run: str) -> None:
        barrier.wait()
        for k in range(40):
            stale = run in ("r3", "r17") and k % 2 == 1
            try:
                result = cp.commit(run, progress(run, fences[run] + stale, k=k))
            except LeaseError:
                if not stale:
                    problems.append(f"{run}: refused")
                continue
            if stale:
                problems.append(f"{run}: a stale fence committed")
            if (run, result.events[0].seq) not in cp.durable:
                problems.append(f"{run}: told before its batch committed")

    threads = [threading.Thread(target=work, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    for run in runs:
        expected = 1 + (20 if run in ("r3", "r17") else 40)
        assert seqs(cp, run) == list(range(1, expected + 1))
    commits = sum(cp.sizes)
    assert commits == 32 * 41 and len(cp.sizes) < commits, cp.sizes
    assert cp._group.largest > 1


def test_a_run_alone_writes_one_commit_per_transaction_in_its_own_thread(
        tmp_path: Path) -> None:
    """Nobody waiting: the caller leads its own commit at once (no writer thread, no
    timer), one commit per transaction."""
    cp = Recording(tmp_path / "runs.db")
    fence = started(cp, "solo")
    for k in range(20):
        cp.commit("solo", progress("solo", fence, k=k))
    assert cp.sizes == [1] * 21
    assert cp.writers == {threading.get_ident()}
    assert cp._group._writer is None


def test_an_unencodable_value_fails_its_commit_alone(tmp_path: Path) -> None:
    """A value that does not encode is refused in its caller's thread, before its commit
    joins a batch: the commits of the other threads land."""
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    runs = [f"r{i}" for i in range(8)]
    fences = {run: started(cp, run) for run in runs}
    barrier = threading.Barrier(len(runs))
    errors: dict[str, BaseException] = {}

    def work(run: str) -> None:
        barrier.wait()
        for k in range(20):
            value: object = {1, 2} if run == "r5" and k == 10 else k
            try:
                cp.commit(run, progress(run, fences[run], value=value))
            except SerializationError as exc:
                errors[run] = exc

    threads = [threading.Thread(target=work, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(errors) == ["r5"] and "value" in str(errors["r5"])
    for run in runs:
        assert len(seqs(cp, run)) == 1 + (19 if run == "r5" else 20)


def linear(n: int, is_async: bool) -> Flow:
    flow = Flow(f"linear-{n}", purpose="group commit test", max_steps=n + 1)
    names = [f"n{i}" for i in range(n)]
    for i, name in enumerate(names):
        if is_async:
            async def anode(ctx: object, i: int = i) -> dict[str, int]:
                await asyncio.sleep(0)
                return {"last": i}
            flow.add(anode, name=name)
        else:
            def node(ctx: object, i: int = i) -> dict[str, int]:
                return {"last": i}
            flow.add(node, name=name)
    for a, b in pairwise(names):
        flow.edge(a, b)
    flow.edge(names[-1], END)
    return flow


def assert_completed(cp: SQLiteCheckpointer, run_id: str, nodes: int) -> None:
    state = cp.load_latest(run_id)
    assert state is not None and state.status == RunStatus.COMPLETED, run_id
    assert state.data == {"last": nodes - 1}
    events = cp.list_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == EventKind.NODE_COMPLETED for e in events) == nodes


def test_256_concurrent_aruns_in_one_loop(tmp_path: Path) -> None:
    """256 runs awaited at once on one event loop: all complete, their seqs contiguous,
    no "database is locked"; their commits are batched, and never written on the event
    loop's thread."""
    cp = Recording(tmp_path / "runs.db")
    flow = linear(10, is_async=True)

    async def main() -> list[object]:
        return await asyncio.gather(*(flow.arun({}, checkpointer=cp, run_id=f"a{i}")
                                      for i in range(256)), return_exceptions=True)

    loop_thread = threading.get_ident()
    results = asyncio.run(main())
    assert [r for r in results if isinstance(r, BaseException)] == []
    for i in range(256):
        assert_completed(cp, f"a{i}", 10)
    assert loop_thread not in cp.writers
    assert max(cp.sizes) > 1 and len(cp.sizes) < sum(cp.sizes)


def test_threads_and_tasks_together(tmp_path: Path) -> None:
    """Runs driven by threads and by tasks of a loop, at once, on one store."""
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    sync_flow, async_flow = linear(8, False), linear(8, True)
    errors: list[BaseException] = []

    def thread_run(i: int) -> None:
        try:
            sync_flow.run({}, checkpointer=cp, run_id=f"t{i}")
        except BaseException as exc:
            errors.append(exc)

    async def tasks() -> None:
        await asyncio.gather(*(async_flow.arun({}, checkpointer=cp, run_id=f"k{i}")
                               for i in range(32)))

    threads = [threading.Thread(target=thread_run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    assert errors == []
    for run in [f"t{i}" for i in range(16)] + [f"k{i}" for i in range(32)]:
        assert_completed(cp, run, 8)


def test_a_task_cancelled_mid_commit_sees_it_finish_first(tmp_path: Path) -> None:
    """A task cancelled while its commit waits in the queue is cancelled only once the
    commit was written: the store then holds it, and nothing lands later."""
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    fence = started(cp, "r")

    async def main() -> None:
        with cp._lock:  # a batch cannot start: the commit stays queued
            task = asyncio.create_task(cp.acommit("r", progress("r", fence)))
            await asyncio.sleep(0)  # the task runs up to its await
            for _ in range(2):  # cancelled twice: it still waits, the second time too
                task.cancel()
                await asyncio.sleep(0)
                assert not task.done()  # it waits for its commit, lock or no lock
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seqs(cp, "r") == [1, 2]

    asyncio.run(main())
