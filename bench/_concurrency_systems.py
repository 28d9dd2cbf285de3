"""W5's measuring side: what one worker process of bench/concurrency.py runs.

Standard library only at the top: the worker runs in the peers' virtualenv too. Every
system runs R runs of a 20-node linear flow of trivial nodes, C at a time, after a
warm-up of one run at a time (every store close to past its first WAL cycle), and
reports its aggregate nodes/s, the process's CPU seconds per node, and node latency.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODES = 20


def measured_window() -> None:
    """A marker for strace: the parent counts only the fsyncs between the two calls of
    this (a system call nothing else here makes), so schema creation and warm-up do
    not count."""
    os.getppid()


class Stamps:
    """Per run, the perf_counter at each node's start."""

    def __init__(self) -> None:
        self.by_run: dict[str, list[float]] = {}

    def node(self, run: str) -> None:
        self.by_run.setdefault(run, []).append(time.perf_counter())

    def latencies(self) -> list[float]:
        return [b - a for stamps in self.by_run.values() for a, b in itertools.pairwise(stamps)]


class Clock:
    """Wall and process CPU seconds of the measured part (the warm-up excluded)."""

    wall = cpu = 0.0

    def __init__(self, mark: Callable[[], None] | None = None) -> None:
        self.mark = mark  # called just before and just after, outside the timing

    def __enter__(self) -> Clock:
        measured_window()
        if self.mark is not None:
            self.mark()
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c
        if self.mark is not None:
            self.mark()
        measured_window()


def in_threads(c: int, runs: int, one: Callable[[str], None]) -> None:
    """``runs`` calls of ``one(run_id)``, ``c`` threads at a time."""
    ids = iter([uuid.uuid4().hex for _ in range(runs)])
    lock, errors = threading.Lock(), []

    def loop() -> None:
        while True:
            with lock:
                run = next(ids, None)
            if run is None:
                return
            try:
                one(run)
            except Exception as exc:  # reported, never hidden
                errors.append(exc)
                return

    threads = [threading.Thread(target=loop) for _ in range(c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


async def in_tasks(c: int, runs: int, one: Callable[[str], Any]) -> None:
    """``runs`` awaits of ``one(run_id)``, ``c`` tasks at a time."""
    ids = iter([uuid.uuid4().hex for _ in range(runs)])

    async def loop() -> None:
        while (run := next(ids, None)) is not None:
            await one(run)

    await asyncio.gather(*(loop() for _ in range(c)))


def drive(mode: str, c: int, runs: int, warm_up: int, stamps: Stamps,
          one: Callable[[str], Any], before: Callable[[], Any] | None = None,
          after: Callable[[], Any] | None = None,
          mark: Callable[[], None] | None = None) -> Clock:
    """Warm up one run at a time, then measure ``runs`` runs ``c`` at a time, in threads
    (``one`` a function) or in tasks of one loop (``one`` a coroutine function)."""
    clock = Clock(mark)
    if mode == "threads":
        in_threads(1, warm_up, one)
        stamps.by_run.clear()
        with clock:
            in_threads(c, runs, one)
        return clock

    async def main() -> None:
        if before is not None:
            await before()
        await in_tasks(1, warm_up, one)
        stamps.by_run.clear()
        with clock:
            await in_tasks(c, runs, one)
        if after is not None:
            await after()
    asyncio.run(main())
    return clock


def purpose_agent_flow(stamps: Stamps, is_async: bool) -> Any:
    from purpose_agent import END as FLOW_END
    from purpose_agent import Flow
    flow = Flow("w5", purpose="benchmark", max_steps=NODES + 1)
    names = [f"n{i}" for i in range(NODES)]
    for i, name in enumerate(names):
        if is_async:
            async def anode(ctx: Any, i: int = i) -> dict[str, Any]:
                stamps.node(ctx.run_id)
                return {"i": i}
            flow.add(anode, name=name)
        else:
            def node(ctx: Any, i: int = i) -> dict[str, Any]:
                stamps.node(ctx.run_id)
                return {"i": i}
            flow.add(node, name=name)
    for a, b in itertools.pairwise(names):
        flow.edge(a, b)
    flow.edge(names[-1], FLOW_END)
    return flow


def purpose_agent(d: Path, c: int, runs: int, mode: str, warm_up: int,
                  url: str | None) -> tuple[Clock, Stamps, dict[str, Any]]:
    from purpose_agent import open_checkpointer
    from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
    stamps = Stamps()
    cp = open_checkpointer(url) if url else SQLiteCheckpointer(d / "pa.db", synchronous="FULL")
    flow = purpose_agent_flow(stamps, mode == "asyncio")
    extra: dict[str, Any] = {}
    wal: list[int] = []
    # On PostgreSQL the fsyncs are the server's (its own group commit): its count of WAL
    # syncs just before and just after the measured part.
    group = getattr(cp, "_group", None)  # SQLite's group commit: its own counters

    def mark() -> None:
        if url:
            wal.append(pg_wal_syncs(url))
        if group is not None:
            wal.append(group.batches)
    try:
        if mode == "threads":
            def one(run: str) -> None:
                assert str(flow.run({}, checkpointer=cp, run_id=run).status) == "completed"
            clock = drive(mode, c, runs, warm_up, stamps, one, mark=mark)
        else:
            async def aone(run: str) -> None:
                assert str((await flow.arun({}, checkpointer=cp, run_id=run)).status) \
                    == "completed"
            clock = drive(mode, c, runs, warm_up, stamps, aone, mark=mark)
        if url:
            extra["fsyncs"], extra["fsync_nodes"] = wal[1] - wal[0], runs * NODES
        elif group is not None:
            # Transactions (one WAL fsync each) per node in this very run: strace's own
            # slowness makes batches bigger, so its count flatters a fast disk.
            extra["tx_node"] = (wal[1] - wal[0]) / (runs * NODES)
        return clock, stamps, extra
    finally:
        cp.close()


def pg_wal_syncs(url: str) -> int:
    """The server's count of WAL syncs (pg_stat_wal, PostgreSQL 14+)."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        return int(row[0]) if row else 0


def langgraph(d: Path, c: int, runs: int, mode: str, warm_up: int) -> tuple[Clock, Stamps]:
    import sqlite3

    from langgraph.graph import END as LG_END
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict, total=False):
        run: str
        i: int

    stamps = Stamps()
    graph = StateGraph(State)
    names = [f"n{i}" for i in range(NODES)]
    for i, name in enumerate(names):
        def node(state: Any, i: int = i) -> dict[str, Any]:
            stamps.node(state["run"])
            return {"i": i}
        graph.add_node(name, node)
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], LG_END)
    path = d / "lg.db"

    def config(run: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": run}, "recursion_limit": NODES + 10}

    if mode == "threads":
        from langgraph.checkpoint.sqlite import SqliteSaver
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA synchronous = FULL")
        app = graph.compile(checkpointer=SqliteSaver(conn))

        def one(run: str) -> None:
            app.invoke({"run": run, "i": -1}, config(run), durability="sync")
        return drive(mode, c, runs, warm_up, stamps, one), stamps

    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    holder: dict[str, Any] = {}

    async def open_saver() -> None:
        # aiosqlite's connection belongs to the loop drive() runs: opened in it.
        holder["conn"] = conn = await aiosqlite.connect(str(path))
        await conn.execute("PRAGMA synchronous = FULL")
        holder["app"] = graph.compile(checkpointer=AsyncSqliteSaver(conn))

    async def close() -> None:
        await holder["conn"].close()

    async def aone(run: str) -> None:
        await holder["app"].ainvoke({"run": run, "i": -1}, config(run), durability="sync")
    return drive(mode, c, runs, warm_up, stamps, aone, before=open_saver, after=close), stamps


def dbos(d: Path, c: int, runs: int, mode: str, warm_up: int) -> tuple[Clock, Stamps]:
    import logging

    from dbos import DBOS, SetWorkflowID

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "bench-w5", "system_database_url": f"sqlite:///{d / 'dbos.db'}",
                 "run_admin_server": False})
    stamps = Stamps()

    @DBOS.step()
    def trivial(run: str, i: int) -> int:
        stamps.node(run)
        return i

    @DBOS.workflow()
    def linear(run: str) -> int:
        for i in range(NODES):
            trivial(run, i)
        return NODES

    DBOS.launch()
    try:
        def one(run: str) -> None:
            with SetWorkflowID(run):
                assert linear(run) == NODES
        return drive(mode, c, runs, warm_up, stamps, one), stamps
    finally:
        DBOS.destroy()


def floor(d: Path) -> dict[str, Any]:
    """The floor's commits/s and its single commit's p50/p99 (one thread)."""
    from bench.compare import Floor
    f = Floor(d / "floor.db", "FULL")
    times = []
    for _ in range(600):
        t0 = time.perf_counter()
        f.per_commit(1)
        times.append(time.perf_counter() - t0)
    return {"rate": len(times) / sum(times), "p50_ms": pct(times, 50) * 1e3,
            "p99_ms": pct(times, 99) * 1e3}


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def worker(system: str, c: int, runs: int, warm_up: int, url: str | None) -> dict[str, Any]:
    """One measurement: the floor first (in this process, just before), then ``system``."""
    with tempfile.TemporaryDirectory(prefix="pa-w5-") as tmp:
        d = Path(tmp)
        base = floor(d)
        if system == "floor":
            return {"floor": base, "nodes_s": base["rate"], "p50_ms": base["p50_ms"],
                    "p99_ms": base["p99_ms"], "nodes": 600}
        name, mode = system.rsplit(" ", 1)
        extra: dict[str, Any] = {}
        if name in ("purpose-agent", "purpose-agent pg"):
            clock, stamps, extra = purpose_agent(d, c, runs, mode, warm_up,
                                                 url if "pg" in name else None)
        elif name == "langgraph":
            clock, stamps = langgraph(d, c, runs, mode, warm_up)
        else:
            clock, stamps = dbos(d, c, runs, mode, warm_up)
        lat = stamps.latencies()
        nodes = sum(len(s) for s in stamps.by_run.values())
        assert nodes == runs * NODES, (nodes, runs)
        return {"floor": base, "nodes_s": nodes / clock.wall, "nodes": nodes,
                "cpu_ms_node": clock.cpu / nodes * 1e3,
                "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, **extra}
