"""The report of bench/workers.py: its tables, and its section of docs/benchmarks.md.

Kept apart from bench/workers.py, whose module level must import the standard library
only (DBOS's worker processes run that file in the peers' interpreter)."""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
from pathlib import Path
from typing import Any


def med(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(results: dict[tuple[str, int], list[dict[str, Any]]], a: tuple[str, int],
          b: tuple[str, int]) -> float | None:
    """Median over rounds of a's runs/s over b's in the same round (measured minutes
    apart, so the machine's load is as alike as it gets)."""
    pairs = zip(results.get(a, []), results.get(b, []), strict=False)
    values = [x["runs_per_s"] / y["runs_per_s"] for x, y in pairs
              if "runs_per_s" in x and "runs_per_s" in y]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table(results: dict[tuple[str, int], list[dict[str, Any]]], systems: list[str],
          counts: list[int], args: argparse.Namespace) -> list[str]:
    lines = ["| system | workers | runs/s | step commits/s | × its 1 worker | enqueue → "
             "first step p50 / p99 | CPU ms / run: workers + server | cores busy | "
             "transactions / run | WAL / run | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for system in systems:
        for workers in counts:
            rows = results.get((system, workers), [])
            if not rows:
                continue
            errors = sorted({e for r in rows for e in r["errors"] + r.get("errors_latency", [])})
            wal, server = med(rows, "wal_per_run"), med(rows, "server_cpu_ms")
            busy = med([{"b": r["runs_per_s"] * (r["worker_cpu_ms"] + (r["server_cpu_ms"] or 0))
                         / 1e3} for r in rows if "runs_per_s" in r], "b")
            lat = rows[0]
            lines.append(
                f"| {system} | {workers} | {fmt(med(rows, 'runs_per_s'))} | "
                f"{fmt(med(rows, 'steps_per_s'), '.0f')} | "
                f"{fmt(ratio(results, (system, workers), (system, counts[0])), '.2f', '×')} | "
                f"{fmt(lat.get('p50_ms'), '.1f')} / {fmt(lat.get('p99_ms'), '.1f')} ms | "
                f"{fmt(med(rows, 'worker_cpu_ms'))}"
                f"{'' if server is None else f' + {server:.1f}'} | {fmt(busy, '.2f')} | "
                f"{fmt(med(rows, 'xacts_per_run'), '.1f')} | "
                f"{fmt(None if wal is None else wal / 1024, '.1f', ' KiB')} | "
                f"{'; '.join(errors)[:300] or 'none'} |")
    lines += ["", "| workers | purpose-agent PG ÷ DBOS PG, runs/s | purpose-agent SQLite ÷ "
              "DBOS PG, runs/s | DBOS PG ÷ purpose-agent PG, CPU per run (workers + server) |",
              "|---|---|---|---|"]
    for workers in counts:
        pa, dbos = results.get(("purpose-agent PG", workers)), results.get(("dbos PG", workers))
        pg = ratio(results, ("purpose-agent PG", workers), ("dbos PG", workers))
        lite = ratio(results, ("purpose-agent SQLite", workers), ("dbos PG", workers))
        cpu = [(y["worker_cpu_ms"] + (y["server_cpu_ms"] or 0))
               / (x["worker_cpu_ms"] + (x["server_cpu_ms"] or 0))
               for x, y in zip(pa or [], dbos or [], strict=False)
               if "worker_cpu_ms" in x and "worker_cpu_ms" in y]
        lines.append(f"| {workers} | {fmt(pg, '.2f', '×')} | {fmt(lite, '.2f', '×')} | "
                     f"{fmt(statistics.median(cpu) if cpu else None, '.2f', '×')} |")
    rounds = max((len(v) for v in results.values()), default=0)
    lines += ["", f"{args.runs} runs per measurement, {rounds} round(s) (medians; ratios are "
              f"medians of same-round ratios); concurrency {args.concurrency} per worker "
              f"process, idle poll {args.poll}s for both; latency from the first round, "
              f"{args.latency_runs} runs enqueued one at a time ~{args.gap}s apart onto idle "
              "workers."]
    return lines


BEGIN, END = "<!-- bench/workers.py:begin -->", "<!-- bench/workers.py:end -->"


def write_section(path: Path, lines: list[str], args: argparse.Namespace, dbos: str,
                  settings: dict[str, str] | None, seconds: float) -> None:
    """Replace this benchmark's section of the report (after compare.py's ``notes``
    marker, which compare.py keeps), leaving the hand-written analysis below it."""
    from bench._sections import replace_section
    from bench.compare import machine, versions

    facts = machine()
    vers = {k: v for k, v in versions(dbos or None).items() if v != "not installed"}
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pg = ", ".join(f"{k} {v}" for k, v in (settings or {}).items())
    body = ["## Workers and queues: purpose-agent and DBOS on one PostgreSQL", "",
            f"Measured {when} by `python -m bench.workers{' --quick' if args.quick else ''}` "
            f"in {seconds / 60:.1f} minutes; load average at the end {load} on "
            f"{facts['cpu']} (shared with other jobs: compare ratios, not absolute figures).",
            "", "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items())
            + f"; Python {facts['python']}, SQLite {facts['sqlite']}. PostgreSQL: {pg}.",
            "", *lines]
    replace_section(path, BEGIN, END, body)
