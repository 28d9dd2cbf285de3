"""The W5 section of docs/benchmarks.md, from the cells bench/concurrency.py measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Cells = dict[tuple[str, int], dict[str, Any]]


def fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def ratio(row: dict[str, Any]) -> float | None:
    floor = row.get("floor", {}).get("rate")
    return row["nodes_s"] / floor if floor and "nodes_s" in row else None


def per_node(row: dict[str, Any]) -> float | None:
    return row["fsyncs"] / row["fsync_nodes"] if row.get("fsync_nodes") else None


def table(cells: Cells) -> list[str]:
    lines = ["| system | C | nodes/s | × floor | CPU ms/node | fsyncs/node | tx/node | p50 ms "
             "| p99 ms | floor commits/s (p50 ms) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (system, c), row in cells.items():
        shown_c = "" if system == "floor" else c
        if "error" in row:
            lines.append(f"| {system} | {shown_c} | {row['error']} | | | | | | | | "
                         f"{row['load']} |")
            continue
        fl = row["floor"]
        fsyncs = fmt(per_node(row), 3) if "fsync_error" not in row else "strace failed"
        lines.append(
            f"| {system} | {shown_c} | {fmt(row['nodes_s'])} | {fmt(ratio(row), 2)}× | "
            f"{fmt(row.get('cpu_ms_node'), 2)} | {fsyncs} | {fmt(row.get('tx_node'), 3)} | "
            f"{fmt(row['p50_ms'], 2)} | "
            f"{fmt(row['p99_ms'], 2)} | {fmt(fl['rate'])} ({fmt(fl['p50_ms'], 2)}) | "
            f"{row['load']} |")
    return lines


def held(ok: bool) -> str:
    return "**held**" if ok else "**not held**"


def targets(cells: Cells) -> list[str]:
    """The issue's targets, each marked held or not with the figures that decide it."""
    out = []

    def get(system: str, c: int) -> dict[str, Any] | None:
        row = cells.get((system, c))
        return row if row and "error" not in row else None

    for mode in ("threads", "asyncio"):
        mine = get(f"purpose-agent {mode}", 32)
        if mine is None:
            continue
        r, f, cpu = ratio(mine), per_node(mine), mine.get("cpu_ms_node")
        need = 3 * mine["floor"]["rate"]
        bound = f"; the process spent {fmt(cpu, 2)} ms CPU per node, so with one GIL " \
            f"it cannot exceed ~{fmt(1e3 / cpu)} nodes/s where 3× needs {fmt(need)}" \
            if cpu else ""
        out.append(f"- C=32 {mode}: aggregate ≥ 3× the floor's commit rate: "
                   f"{held(bool(r and r >= 3))} ({fmt(r, 2)}×: {fmt(mine['nodes_s'])} "
                   f"nodes/s, floor {fmt(mine['floor']['rate'])} commits/s{bound})")
        tx = mine.get("tx_node")
        worst = max((v for v in (f, tx) if v is not None), default=None)
        out.append(f"- C=32 {mode}: fsyncs per node ≤ 0.2: "
                   f"{held(worst is not None and worst <= 0.2)} ({fmt(f, 3)} under strace, "
                   f"{fmt(tx, 3)} transactions per node without it; the larger decides)")
        p99, single = mine["p99_ms"], mine["floor"]["p50_ms"]
        least = f"; a run waits for the 31 others' nodes between two of its own: " \
            f"≥ 32 × {fmt(cpu, 2)} = {fmt(32 * cpu, 1)} ms" if cpu else ""
        out.append(f"- C=32 {mode}: p99 node latency ≤ 5× the floor's single commit: "
                   f"{held(p99 <= 5 * single)} ({fmt(p99, 2)} ms against 5 × "
                   f"{fmt(single, 2)} ms{least})")
        for peer in (f"langgraph {mode}", "dbos threads"):
            theirs = get(peer, 32)
            if theirs is None:
                continue
            x = mine["nodes_s"] / theirs["nodes_s"]
            cpu_x = theirs["cpu_ms_node"] / cpu if cpu and theirs.get("cpu_ms_node") else None
            out.append(f"- C=32 {mode}: ≥ 10× {peer}'s aggregate: {held(x >= 10)} "
                       f"({fmt(x, 1)}×: {fmt(mine['nodes_s'])} against "
                       f"{fmt(theirs['nodes_s'])} nodes/s, measured at different moments "
                       f"of a shared machine; CPU per node {fmt(cpu_x, 1)}× less, which "
                       "the machine's load moves less)")
    for mode in ("threads", "asyncio"):
        one = get(f"purpose-agent {mode}", 1)
        if one is not None:
            before = 0.22 if mode == "threads" else 0.31  # × the floor, measured before
            ok = (ratio(one) or 0) >= 0.9 * before
            out.append(f"- C=1 {mode}: no slower than before group commit ({before}× the "
                       f"floor in \"first figures\" above): {held(ok)} ({fmt(ratio(one), 2)}×)")
    return out


def report(cells: Cells, plan: str, rows: Path | str,
           python_versions: Callable[[], dict[str, str]]) -> list[str]:
    from bench.compare import machine

    facts = machine()
    vers = {k: v for k, v in python_versions().items() if v != "not installed"}
    measured = [row for row in cells.values()]
    when = sorted(row["when"] for row in measured)
    span = f"between {when[0]} and {when[-1]} UTC" if when else "not yet"
    errors = sum("error" in row for row in measured)
    return [
        "## W5: many runs at once in one process (group commit)", "",
        f"Measured {span} by `python -m bench.concurrency{' --quick' if plan == 'quick' else ''}`"
        f" ({len(measured)} cells, {errors} failed; each cell's row in `{rows}`, written as "
        f"soon as it was measured) on {facts['cpu']}, disk {facts['disk']}, shared with other "
        "jobs (each row's load average is the machine's when it ended: compare ratios, "
        "not absolute figures). " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".", "",
        "C concurrent runs of a 20-node linear flow of trivial nodes in one process, "
        "SQLite WAL synchronous=FULL: purpose-agent `flow.run` in C threads and `flow.arun` "
        "in C tasks of one loop, LangGraph `SqliteSaver` (threads) and `AsyncSqliteSaver` "
        "(tasks) with `durability=\"sync\"`, DBOS workflows of 20 steps in C threads on its "
        "SQLite system database, and purpose-agent on PostgreSQL (`pg`: one pool shared by "
        "the C runs, a throwaway local cluster, fsync on). The floor is one thread "
        "committing one ~200-byte row per fsynced transaction, measured in the same process "
        "just before each cell. CPU ms/node is the process's CPU time (all threads) over "
        "the measured nodes. fsyncs/node: every fsync/fdatasync of the process (all "
        "threads) during the measured part of a second, shorter run under `strace -f`; "
        "for `pg`, the server's WAL syncs (pg_stat_wal) during the measured part. strace "
        "slows every system call it stops, fsyncs included, so batches grow under it: "
        "tx/node is the group commit's own count of transactions (one WAL fsync each, "
        "WAL checkpoints aside) per node in the measured run itself, without strace. Node "
        "latency is from a node's start to the next node's start in the same run.", "",
        *table(cells), "", "Targets (issue 13):", "", *targets(cells),
    ]
