"""What bounds the engine's cost per node: its SQL and fsyncs, or its Python.

    python bench/bound.py            # N = 100, 9 rounds
    python bench/bound.py --quick

For a linear flow of trivial nodes on SQLite, at FULL and at NORMAL, interleaved with the
floor (one fsynced ~200-byte INSERT per commit, as in bench/compare.py):

- **engine**: the flow's time per node, and how much of it the store's SQL statements
  take (each ``execute`` timed; the rest is Python: the engine, encoding, the store's
  own code);
- **SQL alone**: the exact statements and parameters the store executed, recorded from
  a run and replayed with raw ``sqlite3`` into a fresh file in steady state — the cost
  of the journal's design with no Python at all.

This is a diagnostic: it reaches into the store's connection to time and record it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from compare import Floor, PurposeAgent  # bench/ is the script's directory: same floor, flow

from purpose_agent.runtime.checkpoint._sqlite_db import META, SCHEMA


class Timed:
    """Wraps a store's connection: times every statement, records it for a replay."""

    def __init__(self, db: Any) -> None:
        self.db, self.seconds, self.log = db, 0.0, []

    def execute(self, sql: str, params: Any = ()) -> Any:
        t0 = time.perf_counter()
        cursor = self.db.execute(sql, params)
        rows = cursor.fetchall() if sql.startswith("SELECT") else None
        self.seconds += time.perf_counter() - t0
        self.log.append((sql, list(params)))
        return _Rows(rows) if rows is not None else cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Any:
        return iter(self.rows)


def engine(d: Path, sync: str, n: int, rounds: int, floor: Floor) -> dict[str, float]:
    system = PurposeAgent(sync)
    flow, cp = system.linear(n), system.store(d / f"engine-{sync}.db")
    for _ in range(-(-1200 // n)):  # past the first WAL cycle, as every figure here
        flow.run({}, checkpointer=cp, run_id=uuid.uuid4().hex)
    timed = Timed(cp._db)
    cp._db = timed
    per_node, sql, ratio = [], [], []
    for _ in range(rounds):
        base = floor.per_commit(n)
        timed.seconds, timed.log = 0.0, []
        t0 = time.perf_counter()
        flow.run({}, checkpointer=cp, run_id=uuid.uuid4().hex)
        elapsed = time.perf_counter() - t0
        per_node.append(elapsed / n)
        sql.append(timed.seconds / n)
        ratio.append(elapsed / n / base)
    return {"us": statistics.median(per_node) * 1e6, "sql_us": statistics.median(sql) * 1e6,
            "x": statistics.median(ratio), "log": timed.log}


def replay(d: Path, sync: str, log: list[tuple[str, list[Any]]], n: int, rounds: int,
           floor: Floor) -> dict[str, float]:
    """The recorded run's statements, again and again, each round as a run of its own."""
    import sqlite3
    db = sqlite3.connect(str(d / f"replay-{sync}.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {sync}")
    db.execute("PRAGMA journal_size_limit = 4194304")
    db.execute(META)
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    run_id = next(p[0] for sql, p in log if sql.startswith("INSERT INTO runs"))

    def once(k: int) -> float:
        new_id = f"{run_id[:20]}{k:012d}"
        t0 = time.perf_counter()
        for sql, params in log:
            ps = [new_id if p == run_id else p for p in params]
            if sql.startswith("INSERT INTO journal"):
                ps[0] = ((k + 1) << 32) + (ps[0] & 0xFFFFFFFF)  # the file's (k+1)-th run
            elif sql.endswith("WHERE num = ?"):
                ps[-1] = k + 1
            rows = db.execute(sql, ps)
            if sql.startswith("SELECT"):
                rows.fetchall()
        return (time.perf_counter() - t0) / n

    k = 0
    while k * n < 1200:
        once(k)
        k += 1
    per_node, ratio = [], []
    for _ in range(rounds):
        base = floor.per_commit(n)
        value = once(k)
        k += 1
        per_node.append(value)
        ratio.append(value / base)
    return {"us": statistics.median(per_node) * 1e6, "x": statistics.median(ratio)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, default=100)
    args = parser.parse_args()
    rounds = 3 if args.quick else 9
    print(f"per node, linear flow of {args.n} trivial nodes, medians of {rounds} rounds")
    print("| sync | engine | × floor | its SQL | its Python | SQL alone, replayed | × floor |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for sync in ("FULL", "NORMAL"):
            floor = Floor(d / f"floor-{sync}.db", sync)
            e = engine(d, sync, args.n, rounds, floor)
            r = replay(d, sync, e["log"], args.n, rounds, floor)
            print(f"| {sync} | {e['us']:.0f} µs | {e['x']:.2f}× | {e['sql_us']:.0f} µs | "
                  f"{e['us'] - e['sql_us']:.0f} µs | {r['us']:.0f} µs | {r['x']:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
