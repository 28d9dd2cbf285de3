"""The W5 section of docs/benchmarks.md, from bench/concurrency.py's measurements."""

from __future__ import annotations

import argparse
from typing import Any

Results = dict[tuple[str, int], dict[str, Any]]


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(row: dict[str, Any]) -> float | None:
    floor = row.get("floor", {}).get("rate")
    return row["nodes_s"] / floor if floor and "nodes_s" in row else None


def per_node(row: dict[str, Any]) -> float | None:
    return row["fsyncs"] / row["fsync_nodes"] if row.get("fsync_nodes") else None


def table(results: Results) -> list[str]:
    lines = ["| system | C | nodes/s | × floor's commits/s | fsyncs/node | p50 ms | p99 ms | "
             "floor commits/s (p50 ms) |", "|---|---|---|---|---|---|---|---|"]
    for (system, c), row in results.items():
        if "error" in row:
            lines.append(f"| {system} | {c or ''} | {row['error']} | | | | | |")
            continue
        fl = row["floor"]
        lines.append(
            f"| {system} | {c} | {fmt(row['nodes_s'])} | {fmt(ratio(row), 2)}× | "
            f"{fmt(per_node(row), 3)} | {fmt(row['p50_ms'], 2)} | {fmt(row['p99_ms'], 2)} | "
            f"{fmt(fl['rate'])} ({fmt(fl['p50_ms'], 2)}) |")
    return lines


def targets(results: Results) -> list[str]:
    """The issue's targets, each marked held or not with the figures that decide it."""
    out = []

    def get(system: str, c: int) -> dict[str, Any] | None:
        row = results.get((system, c))
        return row if row and "error" not in row else None

    for mode in ("threads", "asyncio"):
        mine = get(f"purpose-agent {mode}", 32)
        if mine is None:
            continue
        r, f = ratio(mine), per_node(mine)
        out.append(f"- C=32 {mode}: aggregate ≥ 3× the floor's commit rate: "
                   f"**{'held' if r and r >= 3 else 'not held'}** ({fmt(r, 2)}×); "
                   f"fsyncs per node ≤ 0.2: **{'held' if f is not None and f <= 0.2 else 'not held'}**"
                   f" ({fmt(f, 3)})")
        p99, single = mine["p99_ms"], mine["floor"]["p50_ms"]
        out.append(f"- C=32 {mode}: p99 node latency ≤ 5× the floor's single commit: "
                   f"**{'held' if p99 <= 5 * single else 'not held'}** ({fmt(p99, 2)} ms "
                   f"against 5 × {fmt(single, 2)} ms)")
        for peer in (f"langgraph {mode}", "dbos threads"):
            theirs = get(peer, 32)
            if theirs is None:
                continue
            x = mine["nodes_s"] / theirs["nodes_s"]
            out.append(f"- C=32 {mode}: ≥ 10× {peer}'s aggregate: "
                       f"**{'held' if x >= 10 else 'not held'}** ({fmt(x, 1)}×: "
                       f"{fmt(mine['nodes_s'])} against {fmt(theirs['nodes_s'])} nodes/s)")
    return out


def report(results: Results, args: argparse.Namespace, seconds: float,
           python: str | None) -> list[str]:
    from bench.compare import machine, versions

    facts = machine()
    vers = {k: v for k, v in versions(python).items() if v != "not installed"}
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return [
        "## W5: many runs at once in one process (group commit)", "",
        f"Measured {{when}} by `python -m bench.concurrency{' --quick' if args.quick else ''}`"
        f" in {seconds / 60:.1f} minutes; load average at the end {load} on {facts['cpu']}, "
        f"disk {facts['disk']} (shared with other jobs: compare ratios, not absolute "
        "figures). " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".", "",
        f"C concurrent runs of a {20}-node linear flow of trivial nodes in one process, "
        "SQLite WAL synchronous=FULL: purpose-agent `flow.run` in C threads and `flow.arun` "
        "in C tasks of one loop, LangGraph `SqliteSaver` (threads) and `AsyncSqliteSaver` "
        "(tasks) with `durability=\"sync\"`, DBOS workflows of 20 steps in C threads on its "
        "SQLite system database, and purpose-agent on PostgreSQL (one pool shared by the C "
        "runs). The floor is one thread committing one ~200-byte row per fsynced "
        "transaction, measured in the same process just before; fsyncs per node count "
        "every fsync/fdatasync of the process under strace (schema creation, warm-up and "
        "WAL checkpoints included) over its nodes; node latency is from a node's start to "
        "the next node's start in the same run.", "",
        *table(results), "", "Targets (issue 13):", "", *targets(results),
    ]
