"""F9: a tampered SQLite row raises StoreCorrupted naming the run and the row.

Each case edits one row of a real store file through the sqlite3 module, as a person
(or a bad restore) would, then makes the read that touches it. Bad JSON, a missing key
and a value of the wrong type all fail the same way: a StoreError the CLI maps to exit
code 5, never a raw JSONDecodeError / KeyError / TypeError naming nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from damaged_run import NODES, build

from purpose_agent.errors import StoreCorrupted, StoreError
from purpose_agent.runtime.checkpoint import SQLiteCheckpointer

ROW_3 = "id = (SELECT (num << 32) + 3 FROM runs WHERE run_id = 'r1')"  # version 3's commit
HEADER = ('{"run_id":"r1","session_id":null,"status":"paused","purpose":"","flow":null,'
          '"flow_ref":null,"current_node":null,"current_step":4,"max_steps":null,'
          '"pending":null,"error":null,"parent":null,"created_at":1.0,"updated_at":2.0}')

LOAD = ("load_latest", lambda cp: cp.load_latest("r1"))
EVENTS = ("list_events", lambda cp: cp.list_events("r1"))
STEPS = ("load_steps", lambda cp: cp.load_steps("r1", 2))
INFO = ("run_info", lambda cp: cp.run_info("r1"))
HISTORY = ("list_history", lambda cp: cp.list_history("r1"))
ROW = "journal row 3 (id 4294967299)"
RUNS = "its row in the runs table"

# (name, SQL edit, read, where the error must point)
CASES: list[tuple[str, str, tuple[str, Callable[[SQLiteCheckpointer], Any]], str]] = [
    ("events not json", f"UPDATE journal SET events = 'not json' WHERE {ROW_3}", EVENTS, ROW),
    ("events an object", f"UPDATE journal SET events = '{{}}' WHERE {ROW_3}", EVENTS, ROW),
    ("events a number", f"UPDATE journal SET events = 7 WHERE {ROW_3}", EVENTS, ROW),
    ("events not events", f"UPDATE journal SET events = '[1, 2]' WHERE {ROW_3}", EVENTS, ROW),
    ("event without kind", f"UPDATE journal SET events = json_remove(events, '$[0].kind') "
     f"WHERE {ROW_3}", EVENTS, ROW),
    ("event of a bad kind type", f"UPDATE journal SET events = json_set(events, "
     f"'$[1].kind', json('[1]')) WHERE {ROW_3}", EVENTS, ROW),
    ("event of another run", f"UPDATE journal SET events = json_set(events, '$[0].run_id', "
     f"'r2') WHERE {ROW_3}", EVENTS, ROW),
    ("event seq wrong type", f"UPDATE journal SET events = json_set(events, '$[0].seq', "
     f"'4') WHERE {ROW_3}", EVENTS, ROW),
    ("one event too few", f"UPDATE journal SET events = json_remove(events, '$[1]') "
     f"WHERE {ROW_3}", EVENTS, ROW),
    ("delta not json", f"UPDATE journal SET delta = 'nope' WHERE {ROW_3}", LOAD, ROW),
    ("delta a list", f"UPDATE journal SET delta = '[]' WHERE {ROW_3}", LOAD, ROW),
    ("delta a number", f"UPDATE journal SET delta = 5 WHERE {ROW_3}", LOAD, ROW),
    ("version text", f"UPDATE journal SET version = 'three' WHERE {ROW_3}", LOAD, ROW),
    ("seqs text", f"UPDATE journal SET last_seq = 'five' WHERE {ROW_3}", EVENTS, ROW),
    ("ops a list", f"UPDATE journal SET delta = json_set(delta, '$.ops', json('[]')) "
     f"WHERE {ROW_3}", LOAD, ROW),
    ("unknown op", f"UPDATE journal SET delta = json_set(delta, '$.ops.n', "
     f"json('[\"frobnicate\", 1]')) WHERE {ROW_3}", LOAD, ROW),
    ("node a number", f"UPDATE journal SET node = 5, delta = json_set(delta, '$.node', 5) "
     f"WHERE {ROW_3}", LOAD, ROW),
    ("node_state without name", f"UPDATE journal SET delta = json_set(delta, "
     f"'$.node_state', json('{{}}')) WHERE {ROW_3}", LOAD, ROW),
    ("header not json", f"UPDATE journal SET header = 'x' WHERE {ROW_3}", LOAD, ROW),
    ("header empty", f"UPDATE journal SET header = '{{}}' WHERE {ROW_3}", LOAD, ROW),
    ("header of another run", f"UPDATE journal SET header = json_set(header, '$.run_id', "
     f"'r2') WHERE {ROW_3}", LOAD, ROW),
    ("status unknown", f"UPDATE journal SET header = json_set(header, '$.status', 'bogus') "
     f"WHERE {ROW_3}", LOAD, ROW),
    ("current_step text", "UPDATE journal SET header = json_set(header, '$.current_step', "
     f"'4') WHERE {ROW_3.replace('+ 3', '+ 5')}", LOAD, ROW.replace("3 (id 4294967299)",
                                                                 "5 (id 4294967301)")),
    ("purpose a number", "UPDATE journal SET header = json_set(header, '$.purpose', 7) "
     f"WHERE {ROW_3.replace('+ 3', '+ 5')}", LOAD, ROW.replace("3 (id 4294967299)",
                                                              "5 (id 4294967301)")),
    ("history header", f"UPDATE journal SET header = json_remove(header, '$.status') "
     f"WHERE {ROW_3}", HISTORY, ROW),
    ("steps not json", f"UPDATE journal SET steps = 'nope' WHERE {ROW_3}", STEPS, ROW),
    ("steps an object", f"UPDATE journal SET steps = '{{}}' WHERE {ROW_3}", STEPS, ROW),
    ("step without key", f"UPDATE journal SET steps = json_remove(steps, '$[0].key') "
     f"WHERE {ROW_3}", STEPS, ROW),
    ("step index text", f"UPDATE journal SET steps = json_set(steps, '$[0].index', 'x') "
     f"WHERE {ROW_3}", STEPS, ROW),
    ("runs header not json", "UPDATE runs SET header = 'garbage'", INFO, RUNS),
    ("runs header empty", "UPDATE runs SET header = '{}'", INFO, RUNS),
    ("runs header of another run", f"UPDATE runs SET header = '{HEADER.replace('r1', 'r2')}'",
     INFO, RUNS),
    ("runs header a number", "UPDATE runs SET header = 12", INFO, RUNS),
    ("snapshot not json", "UPDATE snapshots SET body = 'bad'", LOAD,
     "the snapshots row of version 1"),
    ("snapshot data a list", "UPDATE snapshots SET body = json_set(body, '$.data', "
     "json('[1]'))", LOAD, "the snapshots row of version 1"),
    ("snapshot of another run", "UPDATE snapshots SET body = json_set(body, '$.run_id', "
     "'r2')", LOAD, "the snapshots row of version 1"),
]


@pytest.mark.parametrize(("sql", "read", "where"), [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_a_tampered_row_is_an_error_naming_the_run_and_the_row(tmp_path: Path, sql, read,
                                                                 where) -> None:
    path = tmp_path / "runs.db"
    build(SQLiteCheckpointer(path))
    with sqlite3.connect(path) as raw:
        assert raw.execute(sql).rowcount == 1
    raw.close()
    cp = SQLiteCheckpointer(path)
    with pytest.raises(StoreCorrupted) as caught:
        read[1](cp)
    text = str(caught.value)
    assert f"SQLite store {str(path)!r}, run 'r1', {where}" in text, text
    assert "\n" not in text and "restore the store from a backup" in text


def test_the_untouched_rows_read_as_before(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    build(SQLiteCheckpointer(path))
    cp = SQLiteCheckpointer(path)
    assert cp.load_latest("r1").data == {"n": NODES}
    assert [e.seq for e in cp.list_events("r1")] == list(range(1, 2 * NODES + 2))
    assert [s.result for s in cp.load_steps("r1", 2)] == [2]
    assert cp.run_info("r1").current_step == NODES
    assert [h["version"] for h in cp.list_history("r1")] == list(range(1, NODES + 2))


def test_a_schema_version_that_is_not_a_number_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteCheckpointer(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=rf"{path}.*schema_version 'abc'.*not a number"):
        SQLiteCheckpointer(path)
    assert path.read_bytes() == before, "the refused file is left as it was"
