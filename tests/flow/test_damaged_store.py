"""Resuming a run whose journal is damaged refuses with StoreCorrupted and advances
nothing: no journal row or line is added, and the run stays as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from purpose_agent import END, Flow, JSONLCheckpointer, SQLiteCheckpointer
from purpose_agent.errors import StoreCorrupted

ran: list[str] = []
flow = Flow("gated", purpose="three nodes, then a question, then one more")


@flow.node
def first(ctx):
    ran.append("first")
    return {"first": 1}


@flow.node
def second(ctx):
    ran.append("second")
    return {"second": 2}


@flow.node
def ask(ctx):
    return {"answer": ctx.interrupt({"question": "go on?"})}


@flow.node
def last(ctx):
    ran.append("last")
    return {"last": True}


flow.edge("first", "second").edge("second", "ask").edge("ask", "last").edge("last", END)


def _sqlite(tmp_path: Path):
    path = tmp_path / "runs.db"

    def damage() -> None:  # the commit of "second" (state version 2) disappears
        with sqlite3.connect(path) as raw:
            raw.execute("DELETE FROM journal WHERE version = 2 AND delta IS NOT NULL")
        raw.close()

    def journal() -> list[tuple]:
        with sqlite3.connect(path) as raw:
            rows = raw.execute("SELECT * FROM journal ORDER BY id").fetchall()
        raw.close()
        return rows

    return SQLiteCheckpointer(path), damage, journal


def _jsonl(tmp_path: Path):
    cp = JSONLCheckpointer(tmp_path / "runs")
    path = cp.dir / "g.jsonl"

    def damage() -> None:
        lines = path.read_bytes().split(b"\n")
        del lines[1]
        path.write_bytes(b"\n".join(lines))

    return cp, damage, path.read_bytes


@pytest.mark.parametrize("open_store", [_sqlite, _jsonl], ids=["sqlite", "jsonl"])
def test_resuming_a_damaged_run_refuses_and_advances_nothing(tmp_path, open_store) -> None:
    cp, damage, journal = open_store(tmp_path)
    assert str(flow.run({}, checkpointer=cp, run_id="g").status) == "paused"
    damage()
    before = journal()
    ran.clear()
    with pytest.raises(StoreCorrupted, match=r"version 2 is missing|seq \d+ follows"):
        flow.resume("g", checkpointer=cp, answer="yes")
    assert ran == [], "no node ran"
    assert journal() == before, "nothing was journaled"
    with pytest.raises(StoreCorrupted):
        cp.load_latest("g")
