"""Per-node cost of a linear flow on SQLite, against the floor of one fsynced commit.

    python bench/flow.py            # N = 5, 100, 1000
    python bench/flow.py --quick    # fewer repetitions
    python bench/flow.py --sync NORMAL

The floor is what any durable engine must pay per node: one SQLite transaction
(WAL, the same ``synchronous`` level) inserting one ~200-byte row, with raw
:mod:`sqlite3`. The machine is shared and noisy, so the floor and the flow run
interleaved in one process and the figure that matters is the ratio.

The growth check runs N = 1000 and compares the per-node time of the last 100 nodes
with the first 100, from timestamps taken inside the node functions: a journal whose
cost grows with the run's history shows up as a ratio above 1.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from purpose_agent import END, Flow, SQLiteCheckpointer

ROW = "x" * 200
# SQLite's WAL costs ~2x more per fsync while its file is still growing than once it is
# recycled from its start, where a long-lived store spends its life; so the floor and the
# store both make this many commits before anything is measured.
STEADY_COMMITS = 1200


def open_floor(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    """The floor's database, past its first WAL cycle."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    floor_per_commit(db, STEADY_COMMITS)
    return db


def floor_per_commit(db: sqlite3.Connection, n: int) -> float:
    """Seconds per commit of ``n`` single-row fsynced SQLite transactions."""
    t0 = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (body) VALUES (?)", (f"{i:08d}{ROW}",))
        db.execute("COMMIT")
    return (time.perf_counter() - t0) / n


def linear_flow(n: int, stamps: list[float] | None = None) -> Flow:
    """``n`` trivial nodes in a line; each records when it started in ``stamps``."""
    flow = Flow(f"linear-{n}", purpose="benchmark", max_steps=n + 1)
    names = [f"n{i}" for i in range(n)]

    def make(i: int):
        def node(ctx):
            if stamps is not None:
                stamps.append(time.perf_counter())
            return {"i": i}
        return node

    for i, name in enumerate(names):
        flow.add(make(i), name=name)
    for a, b in itertools.pairwise(names):
        flow.edge(a, b)
    flow.edge(names[-1], END)
    return flow


def flow_per_node(cp: SQLiteCheckpointer, flow: Flow, n: int, run_id: str) -> float:
    """Seconds per node of one ``flow.run`` of ``n`` nodes (start and finish included;
    the store is already open, as in a long-lived process)."""
    t0 = time.perf_counter()
    state = flow.run({}, checkpointer=cp, run_id=run_id)
    elapsed = time.perf_counter() - t0
    assert str(state.status) == "completed", state.status
    return elapsed / n


def compare(n: int, reps: int, synchronous: str, tmp: Path) -> dict[str, float]:
    """Interleave floor and flow runs; median ms per node of each and of their ratio."""
    floors, flows, ratios = [], [], []
    flow = linear_flow(n)
    cp = SQLiteCheckpointer(tmp / f"flow-{n}.db", synchronous=synchronous)
    for i in range(-(-STEADY_COMMITS // n)):
        flow_per_node(cp, flow, n, f"warm-up-{i}")
    floor = open_floor(tmp / f"floor-{n}.db", synchronous)
    for rep in range(reps):
        f = floor_per_commit(floor, max(n, 20))
        p = flow_per_node(cp, flow, n, f"r{rep}")
        floors.append(f)
        flows.append(p)
        ratios.append(p / f)
    cp.close()
    floor.close()
    return {"floor_ms": statistics.median(floors) * 1e3,
            "flow_ms": statistics.median(flows) * 1e3,
            "ratio": statistics.median(ratios)}


def growth(n: int, synchronous: str, tmp: Path, window: int = 100) -> dict[str, float]:
    """Per-node time of the last ``window`` nodes over the first ``window``."""
    stamps: list[float] = []
    with SQLiteCheckpointer(tmp / f"growth-{n}.db", synchronous=synchronous) as cp:
        flow_per_node(cp, linear_flow(n), n, "warm-up")
        flow_per_node(cp, linear_flow(n, stamps), n, "growth")
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    first, last = gaps[:window], gaps[-window:]
    return {
        "first_ms": statistics.median(first) * 1e3, "last_ms": statistics.median(last) * 1e3,
        "ratio_median": statistics.median(last) / statistics.median(first),
        "ratio_mean": statistics.fmean(last) / statistics.fmean(first),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--sync", default="FULL", choices=["FULL", "NORMAL"])
    args = parser.parse_args(argv)
    reps = {5: 25, 100: 7, 1000: 1} if not args.quick else {5: 9, 100: 3, 1000: 1}
    with tempfile.TemporaryDirectory(prefix="pa-bench-") as d:
        tmp = Path(d)
        print(f"purpose-agent linear flow on SQLite, synchronous={args.sync} "
              f"(sqlite {sqlite3.sqlite_version}, {os.cpu_count()} cpus)")
        print(f"{'N':>5} {'floor ms/commit':>16} {'flow ms/node':>13} {'ratio':>7}")
        for n, r in reps.items():
            row = compare(n, r, args.sync, tmp)
            print(f"{n:>5} {row['floor_ms']:>16.3f} {row['flow_ms']:>13.3f} "
                  f"{row['ratio']:>6.2f}x")
        g = growth(1000, args.sync, tmp)
        print(f"growth N=1000: first 100 {g['first_ms']:.3f} ms/node, last 100 "
              f"{g['last_ms']:.3f} ms/node: last/first {g['ratio_median']:.2f} (median), "
              f"{g['ratio_mean']:.2f} (mean)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
