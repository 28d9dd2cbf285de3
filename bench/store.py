"""Store throughput per backend, against the floor of one fsynced SQLite commit.

    python bench/store.py            # 3000 operations per measurement
    python bench/store.py --n 500    # quicker
    python bench/store.py --dir /mnt/disk   # measure another filesystem

Three operations, each one durable store write:

- ``events/s``       ``save_event`` of one ~200-byte event
- ``node commits/s`` ``commit`` of one event plus a delta (what the engine writes per node)
- ``snapshots/s``    ``save_snapshot`` of a small run state

The floor is what any durable store must pay per operation: raw :mod:`sqlite3`, WAL,
``synchronous=FULL``, one ``INSERT`` of a ~200-byte row and ``COMMIT`` per operation.
The machine is shared and noisy, so every measurement is split into rounds and the
floor and the stores take turns within each round; the figure that matters is the
ratio to the floor (1.00 = as cheap as the floor; memory is far above it).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
)
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta
from purpose_agent.runtime.state import RunState, RunStatus

ROW = "x" * 200
TEXT = "y" * 30  # with the event's own fields, one event is ~200 bytes of JSON
ROUNDS = 5
OPERATIONS = ("events/s", "node commits/s", "snapshots/s")


class Floor:
    """One raw SQLite INSERT + COMMIT per operation: WAL, synchronous=FULL."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        self.i = 0

    def op(self) -> None:
        self.i += 1
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (body) VALUES (?)", (f"{self.i:08d}{ROW}",))
        self.db.execute("COMMIT")


class Workload:
    """The three operations against one store, each on its own run."""

    def __init__(self, store: BaseCheckpointer) -> None:
        self.store = store
        self.node_state = RunState(run_id="nodes", status=RunStatus.RUNNING, data={"i": 0})
        store.save_snapshot("nodes", self.node_state)
        self.snap_state = RunState(run_id="snaps", status=RunStatus.RUNNING, purpose="bench",
                                   data={"ticket": TEXT, "label": "billing", "i": 0})
        self.step = 0

    def event(self) -> None:
        self.store.save_event(create_event("events", EventKind.AGENT_PROGRESS, text=TEXT))

    def node_commit(self) -> None:
        self.step += 1
        self.node_state.current_step = self.step
        self.store.commit("nodes", Commit(
            events=[create_event("nodes", EventKind.AGENT_FINISHED, node="n", text=TEXT)],
            state=self.node_state, delta=Delta({"i": ["set", self.step]}, node="n")))

    def snapshot(self) -> None:
        self.snap_state.data["i"] += 1
        self.store.save_snapshot("snaps", self.snap_state)


def timed(op: Callable[[], None], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - t0


def run(n: int, directory: Path) -> tuple[float, dict[str, dict[str, float]]]:
    """Operations per second: the floor's, and each store's per operation."""
    stores: dict[str, BaseCheckpointer] = {
        "memory": InMemoryCheckpointer(),
        "JSONL": JSONLCheckpointer(directory / "jsonl"),
        "SQLite FULL": SQLiteCheckpointer(directory / "full.db"),
        "SQLite NORMAL": SQLiteCheckpointer(directory / "normal.db", synchronous="NORMAL"),
    }
    floor = Floor(directory / "floor.db")
    work = {name: Workload(store) for name, store in stores.items()}
    floor_time = 0.0
    spent = {name: dict.fromkeys(OPERATIONS, 0.0) for name in stores}
    per_round = [n // ROUNDS + (1 if r < n % ROUNDS else 0) for r in range(ROUNDS)]
    for count in per_round:
        floor_time += timed(floor.op, count)
        for name, w in work.items():
            for label, op in zip(OPERATIONS, (w.event, w.node_commit, w.snapshot), strict=True):
                spent[name][label] += timed(op, count)
        floor_time += timed(floor.op, count)
    for store in stores.values():
        store.close()
    floor.db.close()
    rates = {name: {label: n / t for label, t in ops.items()} for name, ops in spent.items()}
    return 2 * n / floor_time, rates


def table(floor_rate: float, rates: dict[str, dict[str, float]]) -> str:
    head = f"{'store':<17}" + "".join(f"{label:>16}{'x floor':>9}" for label in OPERATIONS)
    lines = [head, "-" * len(head)]
    lines.append(f"{'raw SQLite floor':<17}"
                 + "".join(f"{floor_rate:>16,.0f}{1.0:>9.2f}" for _ in OPERATIONS))
    for name, ops in rates.items():
        lines.append(f"{name:<17}" + "".join(
            f"{ops[label]:>16,.0f}{ops[label] / floor_rate:>9.2f}" for label in OPERATIONS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=3000,
                        help="operations per measurement (default 3000)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to put the stores (default: a new temp directory)")
    args = parser.parse_args(argv)
    if args.n < ROUNDS:
        parser.error(f"--n must be at least {ROUNDS}")
    base = args.dir if args.dir is not None else Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pa-bench-store-", dir=base) as tmp:
        t0 = time.perf_counter()
        floor_rate, rates = run(args.n, Path(tmp))
        elapsed = time.perf_counter() - t0
    print(f"purpose-agent store throughput: n={args.n} per measurement, {ROUNDS} interleaved "
          f"rounds, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
          f"in {base}")
    print("floor: raw sqlite3, WAL, synchronous=FULL, one INSERT of a ~200-byte row + COMMIT "
          "per operation\n")
    print(table(floor_rate, rates))
    print(f"\n(x floor: store ops/s divided by floor ops/s; total time {elapsed:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
