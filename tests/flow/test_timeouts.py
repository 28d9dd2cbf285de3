"""Node timeouts never land inside the engine's own store writes.

A timed node around many fast durable steps spends most of its time committing, so its
timeout fires inside a commit again and again: on the main thread (SIGALRM) and off it
(an abandoned worker thread). Every run must still end COMPLETED or FAILED with
NodeTimeout, with a contiguous journal, its lease released, and the SQLite file
writable by another process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.runtime.checkpoint._sqlite_db import Transaction
from purpose_agent.runtime.state import RunStatus

RUNS, STEPS = 100, 200

# Another process that tries one write transaction, without waiting, per line it reads.
WRITER = """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], timeout=1.0, isolation_level=None)
    for line in sys.stdin:
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("COMMIT")
            print("writable", flush=True)
        except sqlite3.OperationalError as exc:
            print(f"locked: {exc}", flush=True)
"""


class OtherWriter:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WRITER), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def can_write(self) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("try\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()


def _busy_flow() -> Flow:
    flow = Flow("timed", purpose="a timed node of many fast durable steps")

    @flow.node(timeout=0.02, retries=3, backoff=0)
    def busy(ctx):
        for i in range(STEPS):
            ctx.step(f"s{i}", int, i)
        return {"done": True}

    flow.edge("busy", END)
    return flow


def _node_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("purpose-node")]


def _check_runs(tmp_path: Path, drive_in: str) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db", synchronous="NORMAL")
    flow, writer = _busy_flow(), OtherWriter(tmp_path / "runs.db")
    outcomes: dict[str, int] = {}
    problems: list[str] = []

    def all_runs() -> None:
        for n in range(RUNS):
            run_id = f"r{n}"
            try:
                state = flow.run({}, checkpointer=cp, run_id=run_id)
            except BaseException as exc:  # reported below, whatever it is
                problems.append(f"{run_id}: {type(exc).__name__}: {exc}")
                state = None
            if state is not None:
                outcome = str(state.status) + (f" {state.error['type']}" if state.error else "")
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if (answer := writer.can_write()) != "writable":
                problems.append(f"after {run_id} the file is {answer}")
            if problems:
                return

    try:
        if drive_in == "main":
            all_runs()
        else:
            driver = threading.Thread(target=all_runs)
            driver.start()
            driver.join(300)
            assert not driver.is_alive()
        # Abandoned attempts end at their next step; once they have, nothing more may
        # have been written by them: every run's journal ends with its last event.
        for t in _node_threads():
            t.join(30)
        assert not problems, problems[:5]
        assert set(outcomes) <= {"completed", "failed NodeTimeout"}, outcomes
        assert sum(outcomes.values()) == RUNS
        for n in range(RUNS):
            run_id = f"r{n}"
            seqs = [e.seq for e in cp.list_events(run_id)]
            assert seqs == list(range(1, len(seqs) + 1)), run_id
            last = cp.list_events(run_id)[-1].kind
            state = cp.load_latest(run_id)
            assert state.status in (RunStatus.COMPLETED, RunStatus.FAILED)
            assert str(last) == ("run.finished" if state.status is RunStatus.COMPLETED
                                 else "run.error"), (run_id, last)
            assert cp.run_info(run_id).owner is None, run_id
    finally:
        writer.close()
        cp.close()


def test_timeouts_on_the_main_thread_never_land_inside_a_commit(tmp_path):
    assert threading.current_thread() is threading.main_thread()
    _check_runs(tmp_path, "main")


def test_timeouts_off_the_main_thread_never_let_an_abandoned_attempt_write(tmp_path):
    _check_runs(tmp_path, "thread")


# ── the SQLite transaction itself ──────────────────────────────────────────────────


class _InterruptedAfterBegin:
    """A real connection whose ``BEGIN IMMEDIATE`` succeeds, then a signal handler raises
    (what a timeout or Ctrl-C does when it lands right after the statement)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        cursor = self.db.execute(sql, *args)
        if sql == "BEGIN IMMEDIATE":
            raise KeyboardInterrupt
        return cursor


def test_an_exception_right_after_begin_leaves_no_transaction_open(tmp_path):
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    writer = OtherWriter(tmp_path / "runs.db")
    try:
        tx = Transaction(_InterruptedAfterBegin(cp._db), cp._lock, cp.path)  # type: ignore[arg-type]
        with pytest.raises(KeyboardInterrupt):
            with tx:
                pass
        assert not cp._db.in_transaction
        assert writer.can_write() == "writable"
        released = threading.Thread(target=lambda: cp._lock.acquire() and cp._lock.release())
        released.start()
        released.join(10)
        assert not released.is_alive()  # the store's lock was handed back
    finally:
        writer.close()
        cp.close()


class _Interrupt(BaseException):
    pass


def test_a_signal_anywhere_in_a_store_write_leaves_the_file_writable(tmp_path):
    """Real SIGALRMs at random points of real commits (not the engine's: those defer
    them). A signal inside BEGIN or the commit's body is rolled back at once; one that
    lands on the very entry of the cleanup (where Python code cannot guard itself) leaves
    a transaction that the store's next write rolls back. Either way the store goes on
    working, nothing that returned is lost, and the file stays writable."""
    import random
    import signal

    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.journal import Commit
    from purpose_agent.runtime.state import RunState

    cp = SQLiteCheckpointer(tmp_path / "runs.db", synchronous="OFF")
    cp.commit("r1", Commit(state=RunState(run_id="r1"), create=True, snapshot=True))
    writer = OtherWriter(tmp_path / "runs.db")

    def interrupt(_signum, _frame):
        raise _Interrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    rng = random.Random(7)
    interrupted, returned = 0, []

    def progress(n: int, **extra: Any) -> Commit:
        return Commit(events=[create_event("r1", EventKind.NODE_PROGRESS, seq=0, n=n,
                                           **extra)])

    try:
        for n in range(400):
            try:
                signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.00001, 0.0004))
                cp.commit("r1", progress(n))
                signal.setitimer(signal.ITIMER_REAL, 0)
                returned.append(n)
            except _Interrupt:
                interrupted += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            cp.commit("r1", progress(n, calm=True))  # the next write always works ...
            assert not cp._db.in_transaction, f"a transaction was left open (commit {n})"
            if n % 100 == 99:  # ... and leaves the file to others
                assert writer.can_write() == "writable"
        assert interrupted >= 20  # the signals really landed in commits, often
        seen = [e.payload["n"] for e in cp.list_events("r1") if "calm" not in e.payload]
        assert set(returned) <= set(seen)  # a commit that returned is never lost
    finally:
        signal.signal(signal.SIGALRM, previous)
        writer.close()
        cp.close()
