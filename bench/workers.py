"""purpose-agent workers against DBOS queues, side by side, on one PostgreSQL server.

    python -m bench.workers            # full run (~15 minutes on a loaded machine); writes
                                       # its section of docs/benchmarks.md
    python -m bench.workers --quick    # a short run, same table (noisier)

Run from the checkout's root with the project's virtualenv: PostgreSQL comes from
``tests/pg_server.py`` (a throwaway cluster, ``fsync`` and ``synchronous_commit`` on) or
``$PURPOSE_AGENT_TEST_PG``; DBOS runs in ``bench/compare.py``'s peers virtualenv
(``bench/.peers/venv``), never as a project dependency.

The workload: five no-op durable steps per run. purpose-agent: a flow of one node making
five ``ctx.step`` calls (each result committed before the node goes on and returned, not
recomputed, on resume: what a ``@DBOS.step`` is). DBOS: a ``@DBOS.workflow`` calling a
``@DBOS.step`` five times, on a queue whose ``worker_concurrency`` equals purpose-agent's
``concurrency``. For each system and 1, 2, 4 worker processes, *throughput*: runs enqueued
up front by a separate process, then the pool's processes start together and drain the
queue (runs/s over [first step started, last step ended], timestamps taken inside the
steps; CPU per run of the workers and of the server; the database's transactions and WAL
per run); *latency*: a fresh idle pool, runs enqueued one at a time at random gaps,
enqueue returned → first step began (one machine, one clock). docs/benchmarks.md says
how to read the figures.

This file is also each process of the run (``--role``); at module level it imports the
standard library only, so DBOS's processes run it in the peers' interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STEPS = 5
QUEUE = "bench"
WORKFLOW = "five_steps"
SYSTEMS = ("purpose-agent PG", "dbos PG", "purpose-agent SQLite")

# ── inside the workers: the five steps, timed ─────────────────────────────────────
# Each process keeps, per run, when its first step began and its last step ended.
_times: dict[str, list[float]] = {}
_repeats: list[str] = []  # runs whose first step ran twice in this process


def _noop_step(run_id: str, i: int) -> int:
    if i == 0:
        if run_id in _times:
            _repeats.append(run_id)
        _times[run_id] = [time.time(), 0.0]
    elif i == STEPS - 1:
        _times.setdefault(run_id, [0.0, 0.0])[1] = time.time()
    return i


def pa_flow() -> Any:
    """purpose-agent: one node, five durable steps."""
    from purpose_agent import END, Flow

    flow = Flow(WORKFLOW, purpose="benchmark: five no-op durable steps")

    @flow.node
    def work(ctx: Any) -> dict[str, Any]:
        for i in range(STEPS):
            ctx.step(f"s{i}", _noop_step, ctx.run_id, i)
        return {"done": True}

    flow.edge("work", END)
    return flow


def dbos_app(url: str) -> Any:
    """DBOS, configured, with a workflow of five steps (not launched yet)."""
    import logging

    from dbos import DBOS

    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "bench", "system_database_url": url, "run_admin_server": False})

    @DBOS.step()
    def noop(run_id: str, i: int) -> int:
        return _noop_step(run_id, i)

    @DBOS.workflow(name=WORKFLOW)
    def five_steps() -> int:
        run_id = DBOS.workflow_id
        for i in range(STEPS):
            noop(run_id, i)
        return STEPS

    return DBOS


def dbos_launch(dbos: Any, concurrency: int, poll: float) -> None:
    """Launch DBOS and (re)register its queue in the database, where workers find it."""
    dbos.launch()
    dbos.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=poll,
                        on_conflict="always_update")


def serve(system: str, url: str, concurrency: int, poll: float) -> dict[str, Any]:
    """A worker process: say ``ready`` once loaded, serve from the parent's ``go`` (so a
    pool's processes start together) until SIGTERM, then report the step timestamps and
    the CPU seconds it used from ``go`` on."""
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    stop = threading.Event()
    if system == "dbos":
        dbos = dbos_app(url)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print("ready", flush=True)
        sys.stdin.readline()
        start = cpu()
        dbos_launch(dbos, concurrency, poll)
        stop.wait()
        dbos.destroy(workflow_completion_timeout_sec=10)
    else:
        from purpose_agent.worker import Worker

        worker = Worker(url, flows=[pa_flow()], concurrency=concurrency, poll_interval=poll)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        print("ready", flush=True)
        sys.stdin.readline()
        start = cpu()
        worker.run()
    return {"times": _times, "repeats": _repeats, "cpu_s": cpu() - start}


def enqueue(system: str, url: str, n: int, gap: float) -> dict[str, float]:
    """Enqueue ``n`` runs (``gap`` > 0: one at a time, random gaps around it); returns
    each run's id and the time its enqueue returned."""
    if system == "dbos":
        from dbos import DBOSClient

        client = DBOSClient(system_database_url=url, application_name="bench")

        def one() -> str:
            handle = client.enqueue({"queue_name": QUEUE, "workflow_name": WORKFLOW})
            return str(handle.get_workflow_id())
    else:
        from purpose_agent import open_checkpointer

        flow, cp = pa_flow(), open_checkpointer(url)

        def one() -> str:
            return str(flow.enqueue({}, checkpointer=cp, queue="default"))

    out: dict[str, float] = {}
    for _ in range(n):
        out[one()] = time.time()
        if gap > 0:
            time.sleep(gap * random.uniform(0.5, 1.5))  # the arrival process, not a wait
    return out


# ── the parent ──────────────────────────────────────────────────────────────────


class Pool:
    """``count`` worker processes of one system."""

    def __init__(self, python: str, system: str, url: str, count: int, concurrency: int,
                 poll: float, logs: Path) -> None:
        self.procs = []
        for i in range(count):
            env = {**os.environ, "PYTHONPATH": str(ROOT), "DBOS__VMID": f"bench-{i}"}
            log = open(logs / f"{system}-{count}-{i}-{time.monotonic_ns()}.log", "w+")
            proc = subprocess.Popen(
                [python, str(Path(__file__).resolve()), "--role", "worker", "--system", system,
                 "--url", url, "--concurrency", str(concurrency), "--poll", str(poll)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                cwd=str(ROOT))
            self.procs.append((proc, log))

    def start(self) -> None:
        """Wait until every worker has loaded, then let them all serve at once."""
        for proc, log in self.procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a worker did not start:\n{tail(log)}")
        for proc, _ in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def stop(self) -> dict[str, Any]:
        """SIGTERM every worker; their merged reports, plus their errors."""
        for proc, _ in self.procs:
            proc.send_signal(signal.SIGTERM)
        merged: dict[str, Any] = {"times": {}, "repeats": [], "errors": [], "cpu_s": 0.0}
        for proc, log in self.procs:
            out, _ = proc.communicate(timeout=120)  # closes stdin: a worker never told
            # to go (the pool failed to start) reads EOF and goes, then stops at once
            text = tail(log, 4000)
            if proc.returncode != 0 or "Traceback" in text or " ERROR " in text:
                merged["errors"].append(f"worker exit {proc.returncode}: {text[-600:]}")
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if not lines:
                continue
            report = json.loads(lines[-1])
            for run_id, stamps in report["times"].items():
                if run_id in merged["times"]:
                    merged["repeats"].append(run_id)
                merged["times"][run_id] = stamps
            merged["repeats"] += report["repeats"]
            merged["cpu_s"] += report["cpu_s"]
        return merged


def tail(log: Any, size: int = 1500) -> str:
    log.flush()
    log.seek(0)
    return str(log.read())[-size:]


def child(python: str, role: str, system: str, url: str, **options: Any) -> Any:
    args = [python, str(Path(__file__).resolve()), "--role", role, "--system", system,
            "--url", url]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=str(ROOT),
                          env={**os.environ, "PYTHONPATH": str(ROOT), "DBOS__VMID": "setup"})
    if proc.returncode != 0:
        raise RuntimeError(f"{role} ({system}) failed:\n{proc.stderr[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


class Target:
    """Where one configuration's runs live (a fresh PostgreSQL database, or a SQLite
    file), read through one connection kept open (a new PostgreSQL connection per poll
    would fork a server process each time, on the CPU being measured)."""

    def __init__(self, server: Any, system: str, tmp: Path) -> None:
        self.server, self.system = server, system
        self.conn: Any = None
        self.queries = 0  # ours, to leave out of the database's transaction count
        if system.endswith("SQLite"):
            self.path = tmp / f"runs-{time.monotonic_ns()}.db"
            self.url = f"sqlite:///{self.path}"
            table, good, done = "runs", "'completed'", "('completed', 'failed')"
        else:
            self.url = server.new_database()
            table, good, done = (
                ("dbos.workflow_status", "'SUCCESS'", "('SUCCESS', 'ERROR')")
                if system.startswith("dbos") else
                ("purpose_agent.runs", "'completed'", "('completed', 'failed')"))
        self.sql_done = f"SELECT count(*) FROM {table} WHERE status IN {done}"
        self.sql_bad = f"SELECT count(*) FROM {table} WHERE status <> {good}"

    def query(self, sql: str) -> tuple[Any, ...]:
        if self.conn is None:
            if self.system.endswith("SQLite"):
                self.conn = sqlite3.connect(self.path, isolation_level=None)
            else:
                import psycopg

                self.conn = psycopg.connect(self.url, autocommit=True)
        self.queries += 1
        return tuple(self.conn.execute(sql).fetchone() or ())

    def done(self) -> int:
        """Runs finished so far (a failed one too: it is counted, then reported)."""
        return int(self.query(self.sql_done)[0])

    def failed(self) -> int:
        return int(self.query(self.sql_bad)[0])

    def counters(self) -> tuple[int, int, float]:
        """(transactions committed in this database, the server's WAL position, CPU
        seconds the server's processes used so far)."""
        if self.system.endswith("SQLite"):
            return 0, 0, 0.0
        row = self.query("SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = "
                         "current_database()), pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(row[0]) - self.queries, int(row[1]), server_cpu(self.server)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def server_cpu(server: Any) -> float:
    """CPU seconds of the PostgreSQL server's processes (the postmaster with its reaped
    children, plus the live ones); 0 when this run did not start the server."""
    if server.directory is None:
        return 0.0
    pid = int((server.directory / "data" / "postmaster.pid").read_text().split()[0])
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile: its time is in the postmaster's children's
        if int(stat.parent.name) == pid:
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for(target: Target, n: int, timeout: float, pool: Pool) -> None:
    deadline = time.monotonic() + timeout
    while target.done() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target.done()} of {n} runs finished in {timeout:.0f}s")
        if any(proc.poll() is not None for proc, _ in pool.procs):
            raise RuntimeError("a worker exited early:\n" + tail(pool.procs[0][1]))
        time.sleep(0.1)  # the parent's own polling: it only decides when to stop


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def measure(server: Any, pythons: dict[str, str], system: str, workers: int,
            args: argparse.Namespace, tmp: Path, latency: bool) -> dict[str, Any]:
    kind = "dbos" if system.startswith("dbos") else "pa"
    python, options = pythons[kind], {"concurrency": args.concurrency, "poll": args.poll}
    target = Target(server, system, tmp)
    if kind == "dbos":
        child(python, "setup", kind, target.url, **options)
    enqueued = child(python, "enqueue", kind, target.url, n=args.runs, gap=0)
    pool = Pool(python, kind, target.url, workers, args.concurrency, args.poll, tmp)
    try:
        xact0, wal0, cpu0 = target.counters()
        pool.start()
        wait_for(target, args.runs, 600, pool)
    finally:
        report = pool.stop()
    xact1, wal1, cpu1 = target.counters()
    stamps = [report["times"].get(run_id) for run_id in enqueued]
    ok = [s for s in stamps if s and s[0] and s[1]]
    window = max(s[1] for s in ok) - min(s[0] for s in ok)
    n = len(enqueued)
    errors = list(report["errors"])
    if bad := target.failed():
        errors.append(f"{bad} runs not completed")
    if report["repeats"]:
        errors.append(f"{len(report['repeats'])} first steps ran twice")
    if len(ok) < n:
        errors.append(f"{n - len(ok)} runs without step timestamps")
    target.close()
    out: dict[str, Any] = {
        "runs": n, "window_s": window, "runs_per_s": len(ok) / window,
        "steps_per_s": STEPS * len(ok) / window,
        "xacts_per_run": (xact1 - xact0) / n if xact1 else None,
        "wal_per_run": (wal1 - wal0) / n if wal1 else None,
        "worker_cpu_ms": report["cpu_s"] * 1e3 / n,
        "server_cpu_ms": (cpu1 - cpu0) * 1e3 / n if cpu1 else None, "errors": errors}
    if latency:
        out.update(measure_latency(server, python, kind, system, workers, args, tmp))
    return out


def measure_latency(server: Any, python: str, kind: str, system: str, workers: int,
                    args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Enqueue → first step start on a fresh, idle pool, one run at a time."""
    target = Target(server, system, tmp)
    if kind == "dbos":
        child(python, "setup", kind, target.url, concurrency=args.concurrency, poll=args.poll)
    else:
        child(python, "enqueue", kind, target.url, n=0, gap=0)  # the store's schema
    pool = Pool(python, kind, target.url, workers, args.concurrency, args.poll, tmp)
    try:
        pool.start()
        sent = child(python, "enqueue", kind, target.url, n=args.latency_runs + 2, gap=args.gap)
        wait_for(target, len(sent), 120, pool)
    finally:
        report = pool.stop()
    # The first two runs warm up (a worker may still be opening its LISTEN connection).
    waits = [(report["times"][r][0] - t) * 1e3 for r, t in list(sent.items())[2:]
             if r in report["times"]]
    errors = report["errors"] + ([f"{bad} latency runs not completed"]
                                 if (bad := target.failed()) else [])
    target.close()
    return {"latency_ms": waits, "p50_ms": pct(waits, 0.5), "p99_ms": pct(waits, 0.99),
            "errors_latency": errors}


def pg_settings(server: Any) -> dict[str, str]:
    import psycopg

    with psycopg.connect(server.base_url, autocommit=True) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit",
                             "wal_sync_method", "shared_buffers")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--runs", type=int, help="runs enqueued up front per measurement")
    parser.add_argument("--rounds", type=int, help="rounds over every configuration")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="runs at a time per worker process (DBOS: worker_concurrency)")
    parser.add_argument("--poll", type=float, default=0.05,
                        help="idle poll interval, seconds, of both systems' workers")
    parser.add_argument("--gap", type=float, default=0.15,
                        help="mean seconds between the latency phase's enqueues")
    parser.add_argument("--latency-runs", type=int, help="runs timed in the latency phase")
    parser.add_argument("--only", action="append", choices=SYSTEMS, help="only this system")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="the report to add a section to ('-' for none)")
    parser.add_argument("--raw", help="also write every measurement here, as JSON")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--system", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "worker":
        print(json.dumps(serve(args.system, args.url, args.concurrency, args.poll)), flush=True)
        return 0
    if args.role == "enqueue":
        print(json.dumps(enqueue(args.system, args.url, args.n, args.gap)))
        return 0
    if args.role == "setup":  # DBOS's migrations and queue: DBOSClient runs no migrations
        dbos = dbos_app(args.url)
        dbos_launch(dbos, args.concurrency, args.poll)
        dbos.destroy()
        return 0
    args.runs = args.runs or (150 if args.quick else 400)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.latency_runs = args.latency_runs or (20 if args.quick else 60)
    return run_all(args)


def start_server(log: list[str]) -> Any:
    from tests.pg_server import find_bindir, server_from_environment, start_cluster

    server = server_from_environment()
    if server is not None:
        log.append("PostgreSQL: $PURPOSE_AGENT_TEST_PG")
        return server
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("no PostgreSQL server binaries (apt-get install postgresql), and "
                         "$PURPOSE_AGENT_TEST_PG is not set")
    log.append(f"PostgreSQL: a throwaway cluster from {bindir}")
    return start_cluster(bindir)


def run_all(args: argparse.Namespace) -> int:
    from bench.compare import peer_python

    log: list[str] = []
    python, problems = peer_python(log)  # compare.py's peers' virtualenv, filled if needed
    if "dbos" in problems:
        log.append(f"DBOS: {problems['dbos']}")
    pythons = {"pa": sys.executable, "dbos": "" if "dbos" in problems else str(python)}
    systems = [s for s in SYSTEMS if (not args.only or s in args.only)
               and (pythons["dbos"] or not s.startswith("dbos"))]
    counts = [int(w) for w in args.workers.split(",")]
    started = time.time()
    server = start_server(log)
    for line in log:
        print(line, file=sys.stderr)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="pa-bench-workers-") as tmp:
            for rnd in range(args.rounds):
                order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
                for workers in counts:
                    for system in order:
                        print(f"round {rnd + 1}: {system}, {workers} worker(s) ...",
                              file=sys.stderr, flush=True)
                        try:
                            row = measure(server, pythons, system, workers, args, Path(tmp),
                                          latency=rnd == 0)
                        except Exception as exc:  # reported in the table, the rest goes on
                            row = {"errors": [f"{type(exc).__name__}: {exc}"[:300]]}
                        results.setdefault((system, workers), []).append(row)
            settings = pg_settings(server)
    finally:
        server.stop()
    if args.raw:
        Path(args.raw).write_text(json.dumps({f"{s}|{w}": v for (s, w), v in results.items()}))
    from bench._workers_report import table, write_section

    lines = table(results, systems, counts, args)
    print("\n".join(lines))
    if args.out != "-":
        write_section(Path(args.out), lines, args, pythons["dbos"], settings,
                      time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
