"""W5: many runs at once in one process, on one SQLite file (and on PostgreSQL).

    python -m bench.concurrency                    # full run: docs/benchmarks.md's W5 section
    python -m bench.concurrency --quick            # a few minutes, the same table
    python -m bench.concurrency --resume           # measure only the cells still missing
    python -m bench.concurrency --only langgraph --c 32 --resume   # one more cell
    python bench/compare.py --only W5              # the full run, from compare.py

C = 1, 8, 32, 128 concurrent runs of a 20-node linear flow of trivial nodes in one
process, SQLite synchronous=FULL (WAL), driven by C threads and by C asyncio tasks, side by
side with: the floor (raw single-row commits, one per fsync, one thread), LangGraph
(``SqliteSaver`` in threads, ``AsyncSqliteSaver`` in tasks, ``durability="sync"``) and DBOS
(C concurrent workflows of 20 steps on its SQLite system database). purpose-agent on
PostgreSQL (``PostgresCheckpointer``, its connection pool shared by the C runs) is
measured too when a server is at hand (a throwaway cluster from tests/pg_server.py).

Figures: aggregate nodes/s (all runs' nodes over the wall time), that over the floor's
commits/s measured in the same process just before, the process's CPU per node, fsyncs
per node (a second, shorter run of the same cell under ``strace -f``, counting the
fsync/fdatasync calls of every thread between two markers around the measured part; on
PostgreSQL the server's own WAL syncs, from pg_stat_wal), and p50/p99 node latency (from
a node's start to the next node's start in the same run: the node, its commit and the
wait for it).

Each cell is measured in its own subprocess (``--worker``, bench/_concurrency_systems.py)
and appended to a JSON-lines file next to the report as soon as it is measured; the
report's section is rewritten from that file after every cell, so a run cut off keeps
what it measured, and ``--resume`` measures only the cells the file lacks. The full run
takes ~30 minutes on a loaded 2-core machine: run it in parts (``--only floor --only
purpose-agent``, then ``--resume --only langgraph --only dbos``) to keep each part short.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench/concurrency.py:begin -->", "<!-- bench/concurrency.py:end -->"
SYSTEMS = ["floor", "purpose-agent threads", "purpose-agent asyncio", "langgraph threads",
           "langgraph asyncio", "dbos threads", "purpose-agent pg threads",
           "purpose-agent pg asyncio"]
PEER = {"langgraph": "langgraph", "dbos": "dbos"}
TIMEOUT = 600  # seconds per worker process


class Plan:
    """How much each cell measures: ``--quick`` or the full run."""

    def __init__(self, quick: bool, nodes: int, counts: str | None) -> None:
        self.name = "quick" if quick else "full"
        self.nodes = nodes or (600 if quick else 4000)
        self.counts = [int(c) for c in (counts or ("1,32" if quick else "1,8,32,128"))
                       .split(",")]
        self.warm_up = 10 if quick else 40  # runs of 20 nodes, one at a time
        self.strace_counts = {32} if quick else set(self.counts)

    def runs(self, system: str, c: int) -> int:
        # The peers are 5-50x slower per node: fewer nodes keep their turn bounded.
        peer = system.split()[0] in PEER
        return max(c, self.nodes // 20 // (4 if peer else 1))


# ── one cell: a worker process (and a second one under strace) ───────────────────────
def run_worker(python: str, system: str, c: int, runs: int, warm_up: int,
               url: str | None, strace: bool) -> dict[str, Any]:
    cmd = [python, "-m", "bench.concurrency", "--worker", system, "--c", str(c),
           "--runs", str(runs), "--warm-up", str(warm_up)] + (["--url", url] if url else [])
    trace = None
    if strace:
        trace = Path(tempfile.mkstemp(prefix="pa-w5-strace-")[1])
        cmd = ["strace", "-f", "--seccomp-bpf", "-e", "trace=fsync,fdatasync,getppid",
               "-o", str(trace), *cmd]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              cwd=str(ROOT))
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": tail[:300]}
        out: dict[str, Any] = json.loads(lines[-1])
        if trace is not None:
            out["fsyncs"] = fsyncs_in_window(trace.read_text())
        return out
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TIMEOUT} s"}
    finally:
        if trace is not None:
            trace.unlink(missing_ok=True)


def fsyncs_in_window(strace_output: str) -> int:
    """fsync/fdatasync calls of every thread between the worker's two markers (getppid
    calls around its measured part, see _concurrency_systems.measured_window)."""
    count, inside = 0, False
    for line in strace_output.splitlines():
        call = line.split(maxsplit=1)[-1] if line[:1].isdigit() else line
        if call.startswith("getppid("):
            inside = not inside
        elif inside and call.startswith(("fsync(", "fdatasync(")):
            count += 1
    return count


def measure_cell(exe: str, system: str, c: int, plan: Plan, server: Any,
                 strace: bool) -> dict[str, Any]:
    runs = plan.runs(system, c)
    url = server.new_database() if "pg" in system else None
    row = run_worker(exe, system, c, runs, plan.warm_up, url, strace=False)
    # fsyncs per node: a shorter second run under strace, only its counts kept (strace
    # slows every traced call). PostgreSQL's fsyncs are the server's: counted already.
    if strace and "error" not in row and system != "floor" and "pg" not in system \
            and c in plan.strace_counts:
        short = max(c, runs // 4)
        traced = run_worker(exe, system, c, short, plan.warm_up, None, strace=True)
        if "error" in traced:
            row["fsync_error"] = traced["error"]
        else:
            row["fsyncs"], row["fsync_nodes"] = traced["fsyncs"], traced["nodes"]
    return row


# ── the results file: one JSON line per cell, written as soon as it is measured ──────
def rows_path(args: argparse.Namespace, plan: Plan) -> Path:
    if args.rows:
        return Path(args.rows)
    return ROOT / "docs" / f"benchmarks-w5{'-quick' if plan.name == 'quick' else ''}.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-write: that cell is measured again
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def latest(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (system, C), the last row measured (a re-measured cell replaces the old one)."""
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        cells[(row["system"], row["c"])] = row
    return {k: cells[k] for k in sorted(cells, key=lambda k: (SYSTEMS.index(k[0])
                                                             if k[0] in SYSTEMS else 99, k[1]))}


def wanted(args: argparse.Namespace, plan: Plan, server: Any) -> list[tuple[str, int]]:
    cells = []
    for system in SYSTEMS:
        if args.only and not any(system.startswith(o) for o in args.only):
            continue
        if "pg" in system and server is None:
            continue
        counts = [1] if system == "floor" else plan.counts
        if system == "purpose-agent asyncio" and plan.name == "full" and not args.c:
            counts = [*counts, 256]  # the "256 runs in one loop", p99 included
            plan.strace_counts.add(256)
        cells += [(system, c) for c in counts]
    return cells


def measure(args: argparse.Namespace, plan: Plan, path: Path, python: str | None,
            problems: dict[str, str], server: Any,
            python_versions: Callable[[], dict[str, str]]) -> None:
    strace = shutil.which("strace") is not None
    done = {k for k, row in latest(read_rows(path)).items() if "error" not in row} \
        if args.resume else set()
    for system, c in wanted(args, plan, server):
        if (system, c) in done:
            continue
        peer = PEER.get(system.split()[0])
        started = time.time()
        if peer and (python is None or peer in problems):
            row: dict[str, Any] = {"error": problems.get(peer, "no peers' virtualenv")}
        else:
            print(f"W5 {system} C={c} ...", file=sys.stderr, flush=True)
            row = measure_cell((python if peer else sys.executable) or "", system, c, plan,
                               server, strace)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        append_row(path, {"system": system, "c": c, "plan": plan.name,
                          "when": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M"),
                          "seconds": round(time.time() - started, 1), "load": load,
                          "strace": strace, **row})
        if args.out != "-":  # a file: rewritten after every cell ('-': printed at the end)
            write_report(args, plan, path, python_versions)


def write_report(args: argparse.Namespace, plan: Plan, path: Path,
                 python_versions: Callable[[], dict[str, str]]) -> None:
    from bench._concurrency_report import report
    lines = report(latest(read_rows(path)), plan.name, path.relative_to(ROOT)
                   if path.is_relative_to(ROOT) else path, python_versions)
    if args.out == "-":
        print("\n".join(lines))
    else:
        write_section(Path(args.out), lines)


def write_section(path: Path, lines: list[str]) -> None:
    """Replace W5's section of the report, leaving the rest as it is."""
    from bench._sections import replace_section

    replace_section(path, BEGIN, END, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the results file's cells, measure only the missing ones")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the report from the results file, measure nothing")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="the report whose W5 section is rewritten ('-': print it)")
    parser.add_argument("--rows", help="the results file (default: docs/benchmarks-w5"
                        "[-quick].jsonl)")
    parser.add_argument("--c", help="concurrent runs, comma-separated")
    parser.add_argument("--nodes", type=int, default=0, help="nodes per measurement")
    parser.add_argument("--only", action="append", help="systems starting with this")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--warm-up", type=int, default=40, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from bench._concurrency_systems import worker
        print(json.dumps(worker(args.worker, int(args.c), args.runs, args.warm_up, args.url)))
        return 0
    from bench.compare import PEERS, peer_python, versions

    plan = Plan(args.quick, args.nodes, args.c)
    path = rows_path(args, plan)
    if args.report_only:
        peers = PEERS / "venv" / "bin" / "python"
        write_report(args, plan, path,
                     lambda: versions(str(peers) if peers.exists() else None))
        return 0
    if not args.resume and path.exists():
        path.replace(path.with_suffix(".jsonl.prev"))  # a fresh run; the last one kept aside
    log: list[str] = []
    (PEERS / "tmp").mkdir(parents=True, exist_ok=True)
    python, problems = peer_python(log)
    server = None
    if not args.no_pg and (not args.only or any(o.startswith("purpose-agent")
                                                for o in args.only)):
        from bench.workers import start_server
        try:
            server = start_server(log)
        except SystemExit as exc:
            log.append(f"PostgreSQL skipped: {exc}")
    for line in log:
        print(line, file=sys.stderr)
    try:
        measure(args, plan, path, python, problems, server, lambda: versions(python))
    finally:
        if server is not None:
            server.stop()
    if args.out == "-":
        write_report(args, plan, path, lambda: versions(python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
