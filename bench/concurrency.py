"""W5: many runs at once in one process, on one SQLite file (and on PostgreSQL).

    python -m bench.concurrency            # full run, writes its section of docs/benchmarks.md
    python -m bench.concurrency --quick    # a short run, same table
    python bench/compare.py --only W5      # the same, from compare.py

C = 1, 8, 32, 128 concurrent runs of a 20-node linear flow of trivial nodes in one
process, SQLite synchronous=FULL (WAL), driven by C threads and by C asyncio tasks, side by
side with: the floor (raw single-row commits, one per fsync, one thread), LangGraph
(``SqliteSaver`` in threads, ``AsyncSqliteSaver`` in tasks, ``durability="sync"``) and DBOS
(C concurrent workflows of 20 steps on its SQLite system database). purpose-agent on
PostgreSQL (``PostgresCheckpointer``, its connection pool shared by the C runs) is
measured too when a server is at hand (a throwaway cluster from tests/pg_server.py).

Figures: aggregate nodes/s (all runs' nodes over the wall time), that over the floor's
commits/s measured in the same process just before, fsyncs per node (a second run of the
same worker under ``strace -f -c -e trace=fsync,fdatasync``: every fsync of the process,
schema creation and WAL checkpoints included, over the nodes executed), and p50/p99 node
latency (the time from a node's start to the next node's start in the same run: the node,
its commit and the wait for it).

Each measurement is its own subprocess (``--worker``); the top level imports the standard
library only, so the worker runs in the peers' virtualenv too (bench/compare.py makes it).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODES = 20
BEGIN, END = "<!-- bench/concurrency.py:begin -->", "<!-- bench/concurrency.py:end -->"
WARM_UP_RUNS = 40  # 800 nodes: every store (close to) past its first WAL cycle first


# ── what every system runs: R runs of 20 nodes, C at a time ──────────────────────────
class Stamps:
    """Per run, the perf_counter at each node's start."""

    def __init__(self) -> None:
        self.by_run: dict[str, list[float]] = {}

    def node(self, run: str) -> None:
        self.by_run.setdefault(run, []).append(time.perf_counter())

    def latencies(self) -> list[float]:
        return [b - a for stamps in self.by_run.values() for a, b in itertools.pairwise(stamps)]


def in_threads(c: int, runs: int, one: Callable[[str], None]) -> float:
    """Wall seconds for ``runs`` calls of ``one(run_id)``, ``c`` threads at a time."""
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
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


async def in_tasks(c: int, runs: int, one: Callable[[str], Any]) -> float:
    """Wall seconds for ``runs`` awaits of ``one(run_id)``, ``c`` tasks at a time."""
    ids = iter([uuid.uuid4().hex for _ in range(runs)])

    async def loop() -> None:
        while (run := next(ids, None)) is not None:
            await one(run)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(c)))
    return time.perf_counter() - t0


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


def purpose_agent(d: Path, c: int, runs: int, mode: str, url: str | None) -> tuple[float, Stamps]:
    from purpose_agent import open_checkpointer
    from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
    stamps = Stamps()
    cp = open_checkpointer(url) if url else SQLiteCheckpointer(d / "pa.db", synchronous="FULL")
    flow = purpose_agent_flow(stamps, mode == "asyncio")
    try:
        if mode == "threads":
            def one(run: str) -> None:
                assert str(flow.run({}, checkpointer=cp, run_id=run).status) == "completed"
            in_threads(1, WARM_UP_RUNS, one)
            stamps.by_run.clear()
            return in_threads(c, runs, one), stamps

        async def aone(run: str) -> None:
            assert str((await flow.arun({}, checkpointer=cp, run_id=run)).status) == "completed"

        async def main() -> float:
            await in_tasks(1, WARM_UP_RUNS, aone)
            stamps.by_run.clear()
            return await in_tasks(c, runs, aone)
        return asyncio.run(main()), stamps
    finally:
        cp.close()


def langgraph(d: Path, c: int, runs: int, mode: str) -> tuple[float, Stamps]:
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
        in_threads(1, WARM_UP_RUNS, one)
        stamps.by_run.clear()
        return in_threads(c, runs, one), stamps

    async def main() -> float:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        async with aiosqlite.connect(str(path)) as conn:
            await conn.execute("PRAGMA synchronous = FULL")
            app = graph.compile(checkpointer=AsyncSqliteSaver(conn))

            async def aone(run: str) -> None:
                await app.ainvoke({"run": run, "i": -1}, config(run), durability="sync")
            await in_tasks(1, WARM_UP_RUNS, aone)
            stamps.by_run.clear()
            return await in_tasks(c, runs, aone)
    return asyncio.run(main()), stamps


def dbos(d: Path, c: int, runs: int, mode: str) -> tuple[float, Stamps]:
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
        in_threads(1, WARM_UP_RUNS, one)
        stamps.by_run.clear()
        return in_threads(c, runs, one), stamps
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


def worker(system: str, c: int, runs: int, url: str | None,
           with_floor: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pa-w5-") as tmp:
        d = Path(tmp)
        base = floor(d) if with_floor or system == "floor" else {}
        if system == "floor":
            return {"floor": base, "nodes_s": base["rate"], "p50_ms": base["p50_ms"],
                    "p99_ms": base["p99_ms"], "nodes": 600}
        name, mode = system.rsplit(" ", 1)
        if name in ("purpose-agent", "purpose-agent pg"):
            seconds, stamps = purpose_agent(d, c, runs, mode, url if "pg" in name else None)
        elif name == "langgraph":
            seconds, stamps = langgraph(d, c, runs, mode)
        else:
            seconds, stamps = dbos(d, c, runs, mode)
        lat = stamps.latencies()
        nodes = sum(len(s) for s in stamps.by_run.values())
        assert nodes == runs * NODES, (nodes, runs)
        return {"floor": base, "nodes_s": nodes / seconds, "nodes": nodes,
                "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3}


# ── the parent: every (system, C) in its own process, then the report ───────────────
SYSTEMS = ["floor", "purpose-agent threads", "purpose-agent asyncio", "langgraph threads",
           "langgraph asyncio", "dbos threads", "purpose-agent pg threads",
           "purpose-agent pg asyncio"]
PEER = {"langgraph": "langgraph", "dbos": "dbos"}


def run(python: str, system: str, c: int, runs: int, url: str | None,
        strace: bool) -> dict[str, Any]:
    cmd = [python, "-m", "bench.concurrency", "--worker", system, "--c", str(c),
           "--runs", str(runs)] + (["--url", url] if url else []) + \
        (["--no-floor"] if strace else [])  # the floor's own fsyncs are not the system's
    trace = None
    if strace:
        trace = Path(tempfile.mkstemp(prefix="pa-w5-strace-")[1])
        cmd = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(trace), *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                              cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 900 s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    out: dict[str, Any] = json.loads(lines[-1])
    if trace is not None:
        text = trace.read_text()
        trace.unlink()
        calls = sum(int(line.split()[3]) for line in text.splitlines()
                    if line.split()[-1:] in (["fsync"], ["fdatasync"]))
        out = {"fsyncs": calls, "fsync_nodes": out["nodes"]
               + (WARM_UP_RUNS * NODES if system != "floor" else 1200)}  # warm-ups too
    return out


def measure(args: argparse.Namespace, python: str | None, problems: dict[str, str],
            server: Any) -> dict[tuple[str, int], dict[str, Any]]:
    results: dict[tuple[str, int], dict[str, Any]] = {}
    strace = shutil.which("strace") is not None
    counts = [int(c) for c in args.c.split(",")]
    for system in SYSTEMS:
        if args.only and not any(system.startswith(o) for o in args.only):
            continue
        peer = PEER.get(system.split()[0])
        if "pg" in system and server is None:
            continue
        if peer and (python is None or peer in problems):
            results[(system, 0)] = {"error": problems.get(peer or "", "no peers' venv")}
            continue
        exe = python if peer else sys.executable
        assert exe is not None
        for c in ([1] if system == "floor" else counts):
            # The peers are 5-50x slower per node: fewer nodes keep their turn bounded.
            runs = max(c, args.nodes // NODES // (4 if peer else 1))
            url = server.new_database() if "pg" in system else None
            print(f"W5 {system} C={c} ...", file=sys.stderr, flush=True)
            row = run(exe, system, c, runs, url, strace=False)
            if strace and "error" not in row:  # a shorter run: strace only counts
                url = server.new_database() if "pg" in system else None
                row.update(run(exe, system, c, max(c, runs // 4), url, strace=True))
            results[(system, c)] = row
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="where to write the report's W5 section ('-' for none)")
    parser.add_argument("--c", default="1,8,32,128", help="concurrent runs, comma-separated")
    parser.add_argument("--nodes", type=int, default=0, help="nodes per measurement")
    parser.add_argument("--only", action="append", help="systems starting with this")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--no-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        c = int(args.c)
        print(json.dumps(worker(args.worker, c, args.runs, args.url, not args.no_floor)))
        return 0
    args.nodes = args.nodes or (2000 if args.quick else 8000)
    from bench._concurrency_report import report
    from bench.compare import PEERS, peer_python

    started = time.time()
    log: list[str] = []
    (PEERS / "tmp").mkdir(parents=True, exist_ok=True)
    python, problems = peer_python(log)
    server = None
    if not args.no_pg and (args.only is None or any("pg" in o for o in args.only)
                           or any(o == "purpose-agent" for o in args.only)):
        from bench.workers import start_server
        try:
            server = start_server(log)
        except SystemExit as exc:
            log.append(f"PostgreSQL skipped: {exc}")
    for line in log:
        print(line, file=sys.stderr)
    try:
        results = measure(args, python, problems, server)
    finally:
        if server is not None:
            server.stop()
    lines = report(results, args, time.time() - started, python)
    print("\n".join(lines))
    if args.out != "-":
        write_section(Path(args.out), lines)
    return 0


def write_section(path: Path, lines: list[str]) -> None:
    """Replace W5's section of the report, leaving the rest as it is."""
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [BEGIN, *[ln.replace("{when}", when) for ln in lines], END]
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + "\n".join(body) + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
