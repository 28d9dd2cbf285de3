"""purpose-agent against LangGraph and DBOS, side by side, on SQLite.

    python bench/compare.py            # full run (about 10 minutes), writes docs/benchmarks.md
    python bench/compare.py --quick    # a short run, same table (smaller figures are noisier)

Each system runs in its own subprocess with the same workload definition; the peers
run in their own virtualenv (``bench/.peers/venv``, created from
``bench/requirements-peers.txt``), never as project dependencies. A peer that cannot be
installed is reported as such and the others still run.

The machine these run on is shared and noisy, so every worker measures *the floor* —
one fsynced SQLite transaction per node, raw :mod:`sqlite3`, WAL, one INSERT of a
~200-byte row — interleaved with the system it measures, and each figure is also given
as a ratio to the floor measured beside it.

Workloads:
  W1  linear flow of N trivial nodes (N = 5, 100): median ms per node, run start and
      finish included
  W2  a finished run of 5,000 node executions (10,000 events in purpose-agent): ms to
      load its latest state, and to list its full history, from a freshly opened store
  W3  growth: an agent loop, one node executed N = 1000 times, each appending 1 KB to a
      list in the state (purpose-agent: reducers={"items": "append"}; LangGraph:
      Annotated[list, operator.add]; DBOS: a workflow of N steps each returning 1 KB):
      ms per node of the last 100 over the first 100 (timestamps taken inside the
      nodes), and bytes on disk per node (database + WAL, after the store is closed)
  W4  one node making 100 durable steps: ms per step
  W5  C = 1, 8, 32, 128 concurrent runs of a 20-node flow in one process (threads and
      asyncio): aggregate nodes/s, fsyncs per node, p50/p99 node latency; measured by
      bench/concurrency.py (run from here, or alone: ``python -m bench.concurrency``)

This file is also the worker: ``--worker SYSTEM`` runs one system's workload and prints
one JSON line. The top level imports the standard library only, so the worker runs in
any interpreter.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import operator
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / ".peers"
VENV = PEERS / "venv"
REQUIREMENTS = BENCH / "requirements-peers.txt"
ROW = "x" * 200
KB = 1024
# Commits made before measuring anything. SQLite's WAL costs more per fsync while the
# file is still growing (the file system must commit its new size too) than once it is
# recycled from its start, which is where a long-lived store spends its life: the floor
# is ~2x cheaper there (measured 0.13 vs 0.27 ms). So every store, the floor's included,
# is taken past its first WAL cycle (1000 pages) before it is measured.
STEADY_COMMITS = 1200

# ── the floor ─────────────────────────────────────────────────────────────────────


class Floor:
    """One fsynced SQLite transaction inserting one ~200-byte row, as a durable engine's
    minimum cost per node."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        self.db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
        self.i = 0
        self.per_commit(STEADY_COMMITS)

    def per_commit(self, n: int) -> float:
        """Seconds per commit of ``n`` commits."""
        db = self.db
        t0 = time.perf_counter()
        for _ in range(n):
            self.i += 1
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (f"{self.i:08d}{ROW}",))
            db.execute("COMMIT")
        return (time.perf_counter() - t0) / n


def disk_bytes(path: Path) -> int:
    """Bytes of a SQLite database and its WAL/journal files."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


class KeepWal:
    """Holds a connection open so that closing a store does not delete its WAL: the next
    run reuses the recycled WAL (the steady state) instead of growing a new one."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path))

    def base_bytes(self, path: Path) -> int:
        """Size of the database file with everything so far checkpointed into it."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        return path.stat().st_size

    def close(self) -> None:
        self.db.close()  # the last connection: checkpoints and deletes the WAL


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def timed_reps(fn: Callable[[], float], reps: int, floors: tuple[Floor, Floor],
               n: int) -> dict[str, Any]:
    """Run ``fn`` (``n`` commits; returns seconds per unit) ``reps`` times once its store
    is past its first WAL cycle, each beside a floor measurement of at least 20 commits;
    medians of the figure and of its ratios to each floor."""
    for _ in range(-(-STEADY_COMMITS // n)):
        fn()
    n_floor = max(n, 20)
    mine, full, normal, r_full, r_normal = [], [], [], [], []
    for _ in range(reps):
        f_full = floors[0].per_commit(n_floor)
        value = fn()
        f_normal = floors[1].per_commit(n_floor)
        mine.append(value)
        full.append(f_full)
        normal.append(f_normal)
        r_full.append(value / f_full)
        r_normal.append(value / f_normal)
    return {"ms": median_ms(mine), "floor_full_ms": median_ms(full),
            "floor_normal_ms": median_ms(normal), "x_full": statistics.median(r_full),
            "x_normal": statistics.median(r_normal), "samples_ms": [v * 1e3 for v in mine]}


def growth_figures(stamps: list[float], n: int, path: Path, base_bytes: int = 0,
                   window: int = 100) -> dict[str, Any]:
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    first, last = gaps[:window], gaps[-window:]
    size = disk_bytes(path) - base_bytes
    return {"first_ms": median_ms(first), "last_ms": median_ms(last),
            "ratio": statistics.median(last) / statistics.median(first),
            "ratio_mean": statistics.fmean(last) / statistics.fmean(first),
            "bytes_per_node": size / n, "bytes": size}


def filler(k: int) -> str:
    """1 KB of text, different for every ``k``."""
    return (f"{k:08d}" + uuid.uuid4().hex * 32)[:KB]


# ── the systems ───────────────────────────────────────────────────────────────────
# Each system is a class with the workloads it supports; every method gets a fresh
# directory and returns a dict of figures.


class Plain:
    """Plain Python: the same nodes called in a loop, no durability."""

    durability = "none"

    def w1(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        nodes = [lambda data, i=i: {"i": i} for i in range(n)]

        def once() -> float:
            t0 = time.perf_counter()
            data: dict[str, Any] = {}
            for node in nodes:
                data.update(node(data))
            return (time.perf_counter() - t0) / n

        return timed_reps(once, reps, floors, n)


class FloorSystem:
    """The floor itself, measured like a system (ratio ~1 by construction)."""

    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous
        self.durability = f"WAL, synchronous={synchronous}"

    def w1(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        own = Floor(d / "own.db", self.synchronous)
        return timed_reps(lambda: own.per_commit(n), reps, floors, n)


class PurposeAgent:
    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous
        self.durability = f"WAL, synchronous={synchronous}, one commit per node or step"

    def store(self, path: Path, synchronous: str | None = None) -> Any:
        from purpose_agent import SQLiteCheckpointer
        return SQLiteCheckpointer(path, synchronous=synchronous or self.synchronous)

    def linear(self, n: int) -> Any:
        from purpose_agent import END, Flow
        flow = Flow(f"linear-{n}", purpose="benchmark", max_steps=n + 1)
        names = [f"n{i}" for i in range(n)]

        def make(i: int) -> Callable[[Any], dict[str, Any]]:
            def node(ctx: Any) -> dict[str, Any]:
                return {"i": i}
            return node

        for i, name in enumerate(names):
            flow.add(make(i), name=name)
        for a, b in itertools.pairwise(names):
            flow.edge(a, b)
        flow.edge(names[-1], END)
        return flow

    def w1(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        flow, cp = self.linear(n), self.store(d / "pa.db")

        def once() -> float:
            t0 = time.perf_counter()
            state = flow.run({}, checkpointer=cp, run_id=uuid.uuid4().hex)
            elapsed = time.perf_counter() - t0
            assert str(state.status) == "completed", state.status
            return elapsed / n

        return timed_reps(once, reps, floors, n)

    def w2(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        from purpose_agent import END, Flow
        flow = Flow("loop", purpose="benchmark", max_steps=n + 1)

        @flow.node
        def turn(ctx: Any) -> dict[str, Any]:
            return {"i": ctx.data.get("i", 0) + 1}

        flow.route("turn", lambda data: END if data["i"] >= n else "turn")
        path = d / "pa.db"
        with self.store(path, "OFF") as cp:  # building the run is not what is measured
            flow.run({}, checkpointer=cp, run_id="big")
        load, events, history = [], [], []
        count = 0
        for _ in range(reps):
            with self.store(path) as cp:
                t0 = time.perf_counter()
                state = cp.load_latest("big")
                t1 = time.perf_counter()
                count = len(cp.list_events("big"))
                t2 = time.perf_counter()
                cp.list_history("big")
                t3 = time.perf_counter()
            assert state is not None and state.data["i"] == n
            load.append(t1 - t0)
            events.append(t2 - t1)
            history.append(t3 - t2)
        return {"load_ms": median_ms(load), "events_ms": median_ms(events),
                "history_ms": median_ms(history), "events": count, "nodes": n}

    def w3(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        from purpose_agent import END, Flow
        stamps: list[float] = []
        flow = Flow("grow", purpose="benchmark", max_steps=n + 1, reducers={"items": "append"})

        @flow.node
        def turn(ctx: Any) -> dict[str, Any]:
            stamps.append(time.perf_counter())
            return {"items": filler(len(ctx.data.get("items", ())))}

        flow.route("turn", lambda data: END if len(data["items"]) >= n else "turn")
        path = d / "pa.db"
        with self.store(path) as cp:  # a first run takes the store past its first WAL cycle
            keep = KeepWal(path)
            flow.run({}, checkpointer=cp, run_id="warm-up")
        base = keep.base_bytes(path)
        stamps.clear()
        with self.store(path) as cp:
            state = flow.run({}, checkpointer=cp, run_id="grow")
        keep.close()
        assert len(state.data["items"]) == n
        return growth_figures(stamps, n, path, base)

    def w4(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        from purpose_agent import END, Flow
        flow = Flow("steps", purpose="benchmark")

        @flow.node
        def work(ctx: Any) -> dict[str, Any]:
            t0 = time.perf_counter()
            for k in range(n):
                ctx.step("tool", lambda k: k, k)
            ctx.emit("timing", seconds=time.perf_counter() - t0)
            return {"done": n}

        flow.edge("work", END)
        cp = self.store(d / "pa.db")

        def once() -> float:
            run_id = uuid.uuid4().hex
            flow.run({}, checkpointer=cp, run_id=run_id)
            timing = [e for e in cp.list_events(run_id, kinds="node.progress")]
            return timing[-1].payload["seconds"] / n

        return timed_reps(once, reps, floors, n)


class LinearState(TypedDict, total=False):
    """LangGraph's state for W1 and W3 (``items`` grows by list concatenation)."""

    i: int
    items: Annotated[list, operator.add]


class LoopState(TypedDict):
    i: int


class LangGraph:
    """StateGraph + SqliteSaver. Its defaults: WAL (set by SqliteSaver.setup), SQLite's
    default synchronous (FULL), and ``durability="async"`` (a step's checkpoint is
    written while the next step runs; the run waits for it at the end)."""

    def __init__(self, durability: str) -> None:
        self.mode = durability
        self.durability = (f"WAL, synchronous=FULL, durability={durability!r}"
                           + (" (its default)" if durability == "async" else ""))

    def saver(self, path: Path) -> Any:
        from langgraph.checkpoint.sqlite import SqliteSaver
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA synchronous = FULL")  # what sqlite3 already defaults to
        return SqliteSaver(conn)

    def linear(self, n: int) -> Any:
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(LinearState)

        def make(i: int) -> Callable[[Any], dict[str, Any]]:
            def node(state: Any) -> dict[str, Any]:
                return {"i": i}
            return node

        names = [f"n{i}" for i in range(n)]
        for i, name in enumerate(names):
            graph.add_node(name, make(i))
        graph.add_edge(START, names[0])
        for a, b in itertools.pairwise(names):
            graph.add_edge(a, b)
        graph.add_edge(names[-1], END)
        return graph

    def config(self, thread: str, n: int) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread}, "recursion_limit": n + 10}

    def w1(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        app = self.linear(n).compile(checkpointer=self.saver(d / "lg.db"))

        def once() -> float:
            t0 = time.perf_counter()
            app.invoke({"i": -1}, self.config(uuid.uuid4().hex, n), durability=self.mode)
            return (time.perf_counter() - t0) / n

        return timed_reps(once, reps, floors, n)

    def w2(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(LoopState)
        graph.add_node("turn", lambda s: {"i": s["i"] + 1})
        graph.add_edge(START, "turn")
        graph.add_conditional_edges("turn", lambda s: END if s["i"] >= n else "turn")
        path = d / "lg.db"
        app = graph.compile(checkpointer=self.saver(path))
        app.invoke({"i": 0}, self.config("big", n), durability=self.mode)
        load, history = [], []
        count = 0
        for _ in range(reps):
            app = graph.compile(checkpointer=self.saver(path))
            t0 = time.perf_counter()
            snap = app.get_state(self.config("big", n))
            t1 = time.perf_counter()
            count = sum(1 for _ in app.get_state_history(self.config("big", n)))
            t2 = time.perf_counter()
            assert snap.values["i"] == n
            load.append(t1 - t0)
            history.append(t2 - t1)
        return {"load_ms": median_ms(load), "history_ms": median_ms(history),
                "checkpoints": count, "nodes": n}

    def w3(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        from langgraph.graph import END, START, StateGraph
        stamps: list[float] = []

        def turn(state: Any) -> dict[str, Any]:
            stamps.append(time.perf_counter())
            return {"items": [filler(len(state.get("items", ())))]}

        graph = StateGraph(LinearState)
        graph.add_node("turn", turn)
        graph.add_edge(START, "turn")
        graph.add_conditional_edges("turn", lambda s: END if len(s["items"]) >= n else "turn")
        path = d / "lg.db"
        saver = self.saver(path)  # a first run takes the store past its first WAL cycle
        graph.compile(checkpointer=saver).invoke({"items": []}, self.config("warm-up", n),
                                                 durability=self.mode)
        keep = KeepWal(path)
        saver.conn.close()
        base = keep.base_bytes(path)
        stamps.clear()
        saver = self.saver(path)
        app = graph.compile(checkpointer=saver)
        out = app.invoke({"items": []}, self.config("grow", n), durability=self.mode)
        assert len(out["items"]) == n
        saver.conn.close()
        keep.close()
        return growth_figures(stamps, n, path, base)


class Dbos:
    """A DBOS workflow of N steps on a SQLite system database. Its defaults: SQLite's
    rollback journal and default synchronous (FULL); every step's result is committed
    before the workflow goes on."""

    durability = "rollback journal, synchronous=FULL (its defaults), one commit per step"

    def __init__(self) -> None:
        self.launched = False

    def launch(self, d: Path) -> Any:
        import logging

        from dbos import DBOS

        logging.getLogger("dbos").setLevel(logging.WARNING)
        self.path = d / "dbos.db"
        DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{self.path}",
                     "run_admin_server": False})
        stamps: list[float] = []
        self.stamps = stamps

        @DBOS.step()
        def trivial(i: int) -> int:
            return i

        @DBOS.step()
        def grow(i: int) -> str:
            stamps.append(time.perf_counter())
            return filler(i)

        @DBOS.workflow()
        def linear(n: int) -> int:
            for i in range(n):
                trivial(i)
            return n

        @DBOS.workflow()
        def growing(n: int) -> int:
            items = []
            for i in range(n):
                items.append(grow(i))
            return len(items)

        self.linear, self.growing = linear, growing
        DBOS.launch()
        return DBOS

    def run(self, workflow: Any, n: int) -> float:
        from dbos import SetWorkflowID
        t0 = time.perf_counter()
        with SetWorkflowID(uuid.uuid4().hex):
            assert workflow(n) == n
        return time.perf_counter() - t0

    def w1(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        dbos = self.launch(d)
        try:
            return timed_reps(lambda: self.run(self.linear, n) / n, reps, floors, n)
        finally:
            dbos.destroy()

    w4 = w1  # a DBOS step is its durable step: the same workflow of N steps

    def w3(self, d: Path, n: int, reps: int, floors: tuple[Floor, Floor]) -> dict[str, Any]:
        dbos = self.launch(d)
        try:
            self.run(self.growing, n)
        finally:
            dbos.destroy()
        return growth_figures(self.stamps, n, self.path)


SYSTEMS: dict[str, Callable[[], Any]] = {
    "plain": Plain,
    "floor-FULL": lambda: FloorSystem("FULL"),
    "floor-NORMAL": lambda: FloorSystem("NORMAL"),
    "purpose-agent FULL": lambda: PurposeAgent("FULL"),
    "purpose-agent NORMAL": lambda: PurposeAgent("NORMAL"),
    "langgraph": lambda: LangGraph("async"),
    "langgraph sync": lambda: LangGraph("sync"),
    "dbos": Dbos,
}
PEER_OF = {"langgraph": "langgraph", "langgraph sync": "langgraph", "dbos": "dbos"}
PEER_IMPORT = {"langgraph": "langgraph.checkpoint.sqlite", "dbos": "dbos"}
PEER_PACKAGES = {"langgraph": ["langgraph", "langgraph-checkpoint-sqlite"], "dbos": ["dbos"]}


def worker(system: str, workload: str, n: int, reps: int) -> dict[str, Any]:
    impl = SYSTEMS[system]()
    method = getattr(impl, workload.lower(), None)
    if method is None:
        return {"skip": "not applicable"}
    with tempfile.TemporaryDirectory(prefix="pa-compare-", dir=PEERS / "tmp") as tmp:
        d = Path(tmp)
        floors = (Floor(d / "floor-full.db", "FULL"), Floor(d / "floor-normal.db", "NORMAL"))
        out = method(d, n, reps, floors)
        out["durability"] = impl.durability
        return out


# ── the parent: install, run every worker, print and write the table ────────────────


def peer_python(log: list[str]) -> tuple[str | None, dict[str, str]]:
    """The peers' interpreter (creating the venv if needed) and, per peer, why it is
    unavailable."""
    problems: dict[str, str] = {}
    python = VENV / "bin" / "python"
    if not python.exists():
        log.append(f"creating {VENV.relative_to(ROOT)}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True,
                           capture_output=True, text=True, timeout=300)
        except (subprocess.SubprocessError, OSError) as exc:
            return None, {p: f"cannot create a virtualenv: {exc}" for p in PEER_PACKAGES}
    for peer, module in PEER_IMPORT.items():
        if _imports(python, module):
            continue
        log.append(f"installing {peer} into {VENV.relative_to(ROOT)}")
        wanted = [line.strip() for line in REQUIREMENTS.read_text().splitlines()
                  if line.strip() and not line.startswith("#")
                  and line.split("=")[0].split("<")[0].split(">")[0].strip()
                  in PEER_PACKAGES[peer]]
        proc = subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
            problems[peer] = f"could not be installed: {tail[0][:200]}"
        elif not _imports(python, module):
            problems[peer] = f"installed, but `import {module}` fails in {VENV.name}"
    return str(python), problems


def _imports(python: Path, module: str) -> bool:
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", f"import {module}"],
                          capture_output=True, timeout=120).returncode == 0


def versions(python: str | None) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except Exception: out[p] = 'not installed'\n"
            "print(json.dumps(out))")
    found = {}
    for exe, pkgs in ((sys.executable, ["purpose-agent"]),
                      (python, ["langgraph", "langgraph-checkpoint-sqlite",
                                "langgraph-checkpoint", "dbos", "sqlalchemy"])):
        if exe is None:
            continue
        proc = subprocess.run([exe, "-c", code, *pkgs], capture_output=True, text=True)
        if proc.returncode == 0:
            found.update(json.loads(proc.stdout))
    return found


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        mem_gb = f"{int(mem) / 1024 / 1024:.0f} GiB"
    except OSError:
        mem_gb = "?"
    return {"cpu": f"{cpu}, {os.cpu_count()} cpus", "memory": mem_gb,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "disk": _fs_of(PEERS)}


def _fs_of(path: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout
        fields = out.splitlines()[1].split()
        return f"{fields[1]} on {fields[0]}"
    except (OSError, IndexError):
        return "?"


def plan(quick: bool) -> list[tuple[str, int, int, list[str]]]:
    """(workload, n, reps, systems) in the order they run."""
    everyone = list(SYSTEMS)
    stores = ["purpose-agent FULL", "purpose-agent NORMAL", "langgraph", "langgraph sync",
              "dbos"]
    def r(full: int, short: int) -> int:
        return short if quick else full

    return [
        ("W1", 5, r(41, 9), everyone),
        ("W1", 100, r(15, 3), everyone),
        ("W2", r(5000, 1000), r(7, 3), ["purpose-agent FULL", "langgraph"]),
        ("W3", r(1000, 300), 1, stores),
        ("W4", 100, r(15, 3), ["purpose-agent FULL", "purpose-agent NORMAL", "dbos"]),
    ]


def run_worker(python: str, system: str, workload: str, n: int, reps: int,
               timeout: float) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", system, "--workload", workload,
           "--n", str(n), "--reps", str(reps)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:300]}
    return json.loads(lines[-1])


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(results: dict[tuple[str, int, str], dict[str, Any]],
          problems: dict[str, str]) -> list[str]:
    lines = ["| workload | system | durability | figure | × floor FULL | × floor NORMAL |",
             "|---|---|---|---|---|---|"]
    for (workload, n, system), r in results.items():
        label = {"W1": f"W1 linear N={n}", "W2": f"W2 resume ({n} nodes)",
                 "W3": f"W3 growth N={n}", "W4": f"W4 {n} steps"}[workload]
        dur = r.get("durability", "")
        if "error" in r or "skip" in r:
            why = r.get("error") or r.get("skip")
            lines.append(f"| {label} | {system} | {dur} | {why} | | |")
            continue
        if workload in ("W1", "W4"):
            unit = "ms/node" if workload == "W1" else "ms/step"
            lines.append(f"| {label} | {system} | {dur} | {fmt(r['ms'])} {unit} | "
                         f"{fmt(r['x_full'], 2)}× | {fmt(r['x_normal'], 1)}× |")
        elif workload == "W2":
            parts = [f"load latest {fmt(r['load_ms'], 1)} ms"]
            if "events_ms" in r:
                parts.append(f"list {r['events']} events {fmt(r['events_ms'], 1)} ms")
            if "checkpoints" in r:
                parts.append(f"history of {r['checkpoints']} checkpoints "
                             f"{fmt(r['history_ms'], 1)} ms")
            else:
                parts.append(f"list history {fmt(r['history_ms'], 1)} ms")
            lines.append(f"| {label} | {system} | {dur} | {'; '.join(parts)} | | |")
        else:
            lines.append(
                f"| {label} | {system} | {dur} | first 100 {fmt(r['first_ms'])} ms/node, "
                f"last 100 {fmt(r['last_ms'])} ms/node: last/first {fmt(r['ratio'], 2)} "
                f"(mean {fmt(r['ratio_mean'], 2)}); {r['bytes_per_node'] / KB:.1f} KiB/node "
                f"on disk | | |")
    for peer, why in problems.items():
        lines.append(f"| all | {peer} | | {why} | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="where to write the Markdown report ('-' for none)")
    parser.add_argument("--only", action="append", default=None,
                        help="run only this workload (W1..W5); repeatable")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    (PEERS / "tmp").mkdir(parents=True, exist_ok=True)
    if args.worker:
        print(json.dumps(worker(args.worker, args.workload, args.n, args.reps)))
        return 0

    started = time.time()
    log: list[str] = []
    python, problems = peer_python(log)
    for line in log:
        print(line, file=sys.stderr)
    results: dict[tuple[str, int, str], dict[str, Any]] = {}
    for workload, n, reps, systems in plan(args.quick):
        if args.only and workload not in args.only:
            continue
        for system in systems:
            peer = PEER_OF.get(system)
            if peer and peer in problems:
                continue
            exe = python if peer else sys.executable
            print(f"{workload} n={n} {system} ...", file=sys.stderr, flush=True)
            results[(workload, n, system)] = run_worker(exe, system, workload, n, reps,
                                                        timeout=300)
    if results:
        lines = table(results, problems)
        print("\n".join(lines))
        if args.out != "-":
            write_report(Path(args.out), lines, python, args.quick, time.time() - started)
    if not args.only or "W5" in args.only:  # its own module, its own section of the report
        subprocess.run([sys.executable, "-m", "bench.concurrency", "--out", args.out]
                       + (["--quick"] if args.quick else []), cwd=str(ROOT),
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    shutil.rmtree(PEERS / "tmp", ignore_errors=True)
    return 0


def write_report(path: Path, lines: list[str], python: str | None, quick: bool,
                 seconds: float) -> None:
    facts = machine()
    vers = versions(python)
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# Benchmarks: purpose-agent, LangGraph and DBOS on SQLite",
        "",
        f"Measured {when} by `python bench/compare.py{' --quick' if quick else ''}` "
        f"in {seconds / 60:.1f} minutes.",
        "",
        f"Machine: {facts['cpu']}, {facts['memory']}, {facts['os']}, disk {facts['disk']}; "
        f"Python {facts['python']}, SQLite {facts['sqlite']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        "The machine is shared and noisy: absolute figures move between runs by 2× and "
        "more. Each worker measures the floor (one fsynced SQLite commit of a ~200-byte "
        "row: WAL, the named synchronous level) interleaved with the system, and the "
        "ratios are medians of those paired measurements — compare ratios, not "
        "milliseconds.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    body = path.read_text() if path.exists() else ""
    keep = body.split("<!-- notes -->", 1)[1] if "<!-- notes -->" in body else ""
    path.write_text("\n".join(head + lines) + "\n\n<!-- notes -->" + keep)


if __name__ == "__main__":
    sys.exit(main())
