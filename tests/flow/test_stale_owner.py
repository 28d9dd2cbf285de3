"""A driver frozen past its lease (SIGSTOP, a long GC, a VM pause) that wakes after
another took the run over runs nothing more: it re-checks its lease before a step.
And a lease keeper that dies stops its drivers, loudly."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.errors import LeaseError
from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.state import RunStatus

LEASE = 0.5
TRIALS = 3  # a woken driver races its own heartbeat: without the re-check it loses often
WAIT = 30

# The driver to freeze: a node with two steps, paused on stdin between them.
DRIVER = """
    import os, sys
    from purpose_agent import END, Flow
    from purpose_agent.errors import LeaseError
    from purpose_agent.runtime.checkpoint import open_checkpointer

    url, effects, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def effect(name):
        with open(effects, "a") as f:
            f.write(f"{name} {os.getpid()}\\n")
        return name

    flow = Flow("stale", purpose="a driver frozen between two steps", lease_ttl=lease)

    @flow.node
    def work(ctx):
        ctx.step("a", effect, "a")
        print("between", flush=True)
        sys.stdin.readline()  # frozen here; the run is taken over meanwhile
        ctx.step("b", effect, "b")
        return {"done": True}

    flow.edge("work", END)
    cp = open_checkpointer(url)
    for run_id in sys.argv[4:]:
        try:
            print(flow.run({}, checkpointer=cp, run_id=run_id).status, flush=True)
        except LeaseError as exc:
            print(f"LeaseError: {exc}", flush=True)
"""


def _same_flow(effects: Path) -> Flow:
    """The driver's flow, as the process that takes the run over has it."""
    flow = Flow("stale", purpose="a driver frozen between two steps", lease_ttl=LEASE)

    def effect(name: str) -> str:
        with open(effects, "a") as f:
            f.write(f"{name} {os.getpid()}\n")
        return name

    @flow.node
    def work(ctx):
        ctx.step("a", effect, "a")
        ctx.step("b", effect, "b")
        return {"done": True}

    flow.edge("work", END)
    return flow


def _store_is_held(kind: str, tmp_path: Path) -> bool:
    """Whether some process holds the store's write lock right now."""
    if kind == "sqlite":
        db = sqlite3.connect(tmp_path / "runs.db", timeout=0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            db.close()
    fds = [os.open(p, os.O_RDONLY) for p in (tmp_path / "runs").glob("*.jsonl")]
    try:
        for fd in fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False
    finally:
        for fd in fds:
            os.close(fd)


def _freeze_outside_the_store(child: subprocess.Popen, kind: str, tmp_path: Path) -> None:
    """SIGSTOP the child, at a moment its lease keeper is not inside a store write (a
    process frozen holding the store's lock blocks everyone: not this test's story)."""
    for _ in range(200):
        child.send_signal(signal.SIGSTOP)
        os.waitid(os.P_PID, child.pid, os.WSTOPPED)  # frozen, for sure (report consumed)
        if not _store_is_held(kind, tmp_path):
            return
        child.send_signal(signal.SIGCONT)  # let it finish that write, then freeze again
    raise AssertionError("the frozen child always held the store's lock")


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_a_driver_frozen_past_its_lease_runs_no_step_after_a_takeover(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/runs.db" if kind == "sqlite" else f"jsonl:///{tmp_path}/runs"
    effects = tmp_path / "effects.log"
    runs = [f"r{n}" for n in range(TRIALS)]
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(DRIVER), url, str(effects),
                              str(LEASE), *runs], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cp = open_checkpointer(url)
    try:
        assert child.stdout is not None and child.stdin is not None
        for run_id in runs:
            assert child.stdout.readline().strip() == "between"
            _freeze_outside_the_store(child, kind, tmp_path)
            expires = cp.run_info(run_id).lease_expires_at
            # Wait out the frozen driver's lease: a deadline the store states, not a guess.
            time.sleep(max(0.0, expires - time.time()) + 0.05)
            taken = _same_flow(effects).resume(run_id, checkpointer=cp)
            assert taken.status is RunStatus.COMPLETED

            child.stdin.write("go\n")  # ready before it thaws: it goes straight for step b
            child.stdin.flush()
            child.send_signal(signal.SIGCONT)
            out = child.stdout.readline().strip()
            assert out.startswith("LeaseError") and "taken over" in out, out
            lines = effects.read_text().splitlines()
            # "a" ran once, in the frozen driver; "b" once, in the driver that took over.
            assert lines == [f"a {child.pid}", f"b {os.getpid()}"], (run_id, lines)
            effects.unlink()
            state = cp.load_latest(run_id)
            assert state.status is RunStatus.COMPLETED and cp.run_info(run_id).owner is None
        _out, err = child.communicate(timeout=WAIT)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
            child.communicate()


class _Boom(BaseException):
    """Something no code expects (not an Exception): it kills the thread it hits."""


class _KeeperKillingStore(SQLiteCheckpointer):
    """A real SQLite store whose first lease renewal kills the thread making it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.killed = False

    def renew_lease(self, lease, ttl):  # type: ignore[no-untyped-def]
        if not self.killed and threading.current_thread().name == "purpose-lease":
            self.killed = True
            raise _Boom("simulated death of the lease keeper")
        return super().renew_lease(lease, ttl)


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.CRITICAL)
        self.records: list[logging.LogRecord] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.event.set()


def test_a_dead_lease_keeper_is_logged_and_its_driver_stops(tmp_path):
    cp = _KeeperKillingStore(tmp_path / "runs.db")
    seen = _Seen()
    logging.getLogger("purpose_agent").addHandler(seen)
    effects: list[str] = []
    flow = Flow("kept", purpose="a run whose keeper dies", lease_ttl=0.3)

    @flow.node
    def work(ctx):
        ctx.step("a", effects.append, "a")
        if len(effects) == 1:
            assert seen.event.wait(WAIT)  # the keeper's first beat (0.1 s) killed it
        ctx.step("b", effects.append, "b")
        return {}

    flow.edge("work", END)
    try:
        with pytest.raises(LeaseError, match="lease keeper thread died"):
            flow.run({}, checkpointer=cp, run_id="r1")
        assert effects == ["a"]  # nothing ran unrenewed
        [record] = seen.records
        assert record.name == "purpose_agent" and "'r1'" in record.getMessage()
        assert cp.load_latest("r1").status is RunStatus.RUNNING
        # The stopped driver is gone: the run is taken over at once, by a new keeper.
        assert flow.resume("r1", checkpointer=cp).status is RunStatus.COMPLETED
        assert effects == ["a", "b"]
    finally:
        logging.getLogger("purpose_agent").removeHandler(seen)
        cp.close()
