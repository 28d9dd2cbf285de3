"""A damaged store is an error naming where, never a silent loss (F5, F9).

Every backend verifies on load that a run's event seqs are contiguous and its state
versions consecutive, so an edit that leaves valid JSON behind (a deleted journal row or
line, a dropped delta, a deleted event) is caught where it breaks that invariant. JSONL
lines and SQLite rows that are not what the store wrote raise :class:`StoreCorrupted`
naming the file and line, or the run and row. Only a torn *last* JSONL line (a crash
mid-append) is dropped, with a warning.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from damaged_run import NODES, PROGRESS, build

from purpose_agent.errors import StoreCorrupted
from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
)
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.events import create_event
from purpose_agent.runtime.journal import Commit, Delta
from purpose_agent.runtime.state import RunState, RunStatus


def reads(store: BaseCheckpointer) -> dict[str, Callable[[], Any]]:
    return {
        "load_latest": lambda: store.load_latest("r1"),
        "load_at": lambda: store.load_at("r1", NODES),
        "list_events": lambda: store.list_events("r1"),
        "list_events since 3": lambda: store.list_events("r1", since_seq=3),
    }


# ── structurally valid edits, on every backend ──────────────────────────────────
# Each edit keeps every remaining record valid JSON of the right shape: only the run's
# invariants (seqs contiguous, versions consecutive) can tell. A JSONL journal is read
# whole, line by line, so any read of its run names the first line that breaks them;
# the other stores check the range each read covers.


def _reads_whole(store: BaseCheckpointer) -> bool:
    return isinstance(store, JSONLCheckpointer)


def _drop_commit_of_version(store: BaseCheckpointer, version: int, *, events: bool = True,
                            delta: bool = True, event_index: int | None = None) -> None:
    """Remove (parts of) the commit that wrote state ``version`` behind the store's back."""
    seqs = {2 * version - 2, 2 * version - 1}
    if isinstance(store, InMemoryCheckpointer):
        run = store._runs["r1"]
        if delta:
            run.deltas = [d for d in run.deltas if d[0] != version]
        if events:
            run.events = [e for e in run.events if e[0] not in seqs]
        if event_index is not None:
            run.events = [e for e in run.events if e[0] != 2 * version - 2 + event_index]
    elif isinstance(store, JSONLCheckpointer):
        path = store.dir / "r1.jsonl"
        lines = path.read_bytes().split(b"\n")
        rec = json.loads(lines[version - 1])
        assert rec["version"] == version
        if delta:
            for key in ("version", "step", "node", "delta"):
                del rec[key]
        if events:
            rec["events"] = []
        if event_index is not None:
            del rec["events"][event_index]
        lines[version - 1] = json.dumps(rec).encode()
        if delta and events:
            del lines[version - 1]
        path.write_bytes(b"\n".join(lines))
    elif type(store).__name__ == "PostgresCheckpointer":  # psycopg is an optional extra
        table = f'"{store.schema}"'  # type: ignore[attr-defined]
        with store._connection() as conn:  # type: ignore[attr-defined]  # autocommit
            if delta:
                conn.execute(f"DELETE FROM {table}.states WHERE run_id = 'r1' AND version = %s",
                             (version,))
            gone = sorted(seqs) if events else []
            if event_index is not None:
                gone.append(2 * version - 2 + event_index)
            if gone:
                conn.execute(f"DELETE FROM {table}.events WHERE run_id = 'r1' "
                             "AND seq = ANY(%s)", (gone,))
    else:
        assert isinstance(store, SQLiteCheckpointer)
        raw = sqlite3.connect(store.path)
        where = "WHERE version = ? AND delta IS NOT NULL"
        if delta and events:
            raw.execute(f"DELETE FROM journal {where}", (version,))
        elif delta:
            raw.execute(f"UPDATE journal SET delta = NULL, header = NULL {where}", (version,))
        elif events:
            raw.execute(f"UPDATE journal SET events = NULL {where}", (version,))
        if event_index is not None:
            raw.execute(f"UPDATE journal SET events = json_remove(events, '$[{event_index}]') "
                        f"{where}", (version,))
        raw.commit()
        raw.close()


def test_a_deleted_commit_in_the_middle_of_a_run_is_an_error_on_every_read(store):
    build(store)
    _drop_commit_of_version(store, 3)
    for name, read in reads(store).items():
        with pytest.raises(StoreCorrupted, match="r1") as caught:
            read()
        text = str(caught.value)
        if _reads_whole(store):
            assert f"{store.dir / 'r1.jsonl'}, line 3: event seq 6 follows seq 3" in text
        elif name.startswith("load"):
            assert "state version 4 follows version 2: version 3 is missing" in text, text
        else:
            assert "event seq 6 follows seq 3: seq 4 to 5 are missing" in text, text
    if not _reads_whole(store):  # reads that do not cross the gap still work
        assert [e.seq for e in store.list_events("r1", since_seq=5)] == [6, 7, 8, 9]


def test_a_dropped_delta_is_a_version_gap(store):
    build(store)
    _drop_commit_of_version(store, 3, events=False)
    with pytest.raises(StoreCorrupted, match="version 4 follows version 2: version 3 is"):
        store.load_latest("r1")
    if not _reads_whole(store):
        assert [e.seq for e in store.list_events("r1")] == list(range(1, 10)), \
            "the events are intact"


def test_dropped_events_are_a_seq_gap(store):
    build(store)
    _drop_commit_of_version(store, 3, delta=False)
    with pytest.raises(StoreCorrupted, match="seq 6 follows seq 3"):
        store.list_events("r1")
    if not _reads_whole(store):
        assert store.load_latest("r1").data == {"n": NODES}, "the state is intact"


def test_one_deleted_event_is_caught_wherever_it_was(store):
    for version, index in ((3, 0), (3, 1), (NODES + 1, 0)):
        store.delete_run("r1")
        build(store)
        _drop_commit_of_version(store, version, events=False, delta=False, event_index=index)
        with pytest.raises(StoreCorrupted, match="r1"):
            store.list_events("r1")


def test_an_intact_run_reads_whole_after_every_check(store):
    build(store)
    assert store.load_latest("r1").data == {"n": NODES}
    assert store.load_at("r1", 2).data == {"n": 2}
    assert [e.seq for e in store.list_events("r1")] == list(range(1, 10))
    assert [e.seq for e in store.list_events("r1", since_seq=4, limit=2)] == [5, 6]
    assert [e.payload["part"] for e in store.list_events("r1", since_seq=1, limit=3)] == \
        ["a", "b", "a"]


# ── JSONL: only a torn last line may be dropped ─────────────────────────────────


def _journal_with_line_3(tmp_path: Path, damage: Callable[[bytes], bytes]) -> Path:
    build(JSONLCheckpointer(tmp_path / "store"))
    path = tmp_path / "store" / "r1.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[2] = damage(lines[2])  # the commit of version 3 (seqs 4 and 5)
    path.write_bytes(b"\n".join(lines))
    return path


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[bytes], bytes]:
    def damage(line: bytes) -> bytes:
        rec = json.loads(line)
        rec = change(rec) or rec
        return json.dumps(rec).encode()
    return damage


DAMAGED_LINES = {
    "garbage": lambda line: b"\x00\x13garbage",
    "cut short": lambda line: line[: len(line) // 2],
    "an empty object": lambda line: b"{}",
    "blank": lambda line: b"",
    "a list": lambda line: b"[]",
    "null": lambda line: b"null",
    "events not a list": _edit(lambda rec: rec.update(events={})),
    "delta without header": _edit(lambda rec: rec["delta"].pop("header")),
    "version as text": _edit(lambda rec: rec.update(version="3")),
    "seq as text": _edit(lambda rec: rec["events"][0].update(seq="4")),
    "seq repeated": _edit(lambda rec: rec["events"][1].update(seq=4)),
    "version skipped": _edit(lambda rec: rec.update(version=4)),
    "steps not a list": _edit(lambda rec: rec.update(steps="s")),
}


@pytest.mark.parametrize("damage", list(DAMAGED_LINES))
def test_a_damaged_line_in_the_middle_is_an_error_naming_file_and_line(tmp_path, damage):
    path = _journal_with_line_3(tmp_path, DAMAGED_LINES[damage])
    before = path.read_bytes()
    fresh = JSONLCheckpointer(tmp_path / "store")  # a reader after the damage
    state = RunState(run_id="r1", status=RunStatus.RUNNING, current_step=9)
    attempts = {
        **reads(fresh),
        "next_seq": lambda: fresh.next_seq("r1"),
        "run_info": lambda: fresh.run_info("r1"),
        "save_event": lambda: fresh.save_event(create_event("r1", PROGRESS)),
        "commit": lambda: fresh.commit("r1", Commit(state=state, delta=Delta({"n": ["set", 9]}))),
        "acquire_lease": lambda: fresh.acquire_lease("r1", "me:1", 30),
    }
    for name, attempt in attempts.items():
        with pytest.raises(StoreCorrupted) as caught:
            attempt()
        assert f"{path}, line 3" in str(caught.value), (name, str(caught.value))
    assert path.read_bytes() == before, "nothing was appended after the damage"
    assert fresh.delete_run("r1") and not path.exists(), "a damaged run can be deleted"


def test_a_damaged_complete_last_line_is_an_error_too(tmp_path):
    """A line with its newline was written whole: damage there is no torn write."""
    store = JSONLCheckpointer(tmp_path / "store")
    build(store)
    path = store.dir / "r1.jsonl"
    path.write_bytes(path.read_bytes() + b"{}\n")
    with pytest.raises(StoreCorrupted, match=f"{path}, line {NODES + 2}"):
        JSONLCheckpointer(store.dir).list_events("r1")


def test_a_torn_last_line_is_still_dropped_with_a_warning(tmp_path):
    store = JSONLCheckpointer(tmp_path / "store")
    build(store)
    path = store.dir / "r1.jsonl"
    path.write_bytes(path.read_bytes() + b'{"events":[{"seq":10,')
    fresh = JSONLCheckpointer(store.dir)
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert fresh.load_latest("r1").data == {"n": NODES}
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert fresh.save_event(create_event("r1", PROGRESS)).seq == 10


def test_a_line_that_does_not_follow_the_one_before_stops_the_writer(tmp_path):
    """Two store objects on one directory: the second writer reads the first's lines on
    from where it stopped, and checks them as it goes."""
    writer = JSONLCheckpointer(tmp_path / "store")
    build(writer)
    other = JSONLCheckpointer(tmp_path / "store")
    assert other.next_seq("r1") == 10
    path = writer.dir / "r1.jsonl"
    ghost = create_event("r1", PROGRESS, seq=12).to_json()
    with open(path, "ab") as f:  # a line whose seq skips 10 and 11
        f.write(('{"events":[' + ghost + "]}\n").encode())
    with pytest.raises(StoreCorrupted, match=rf"line {NODES + 2}: .*seq 10 to 11 are missing"):
        other.save_event(create_event("r1", PROGRESS))


@pytest.mark.parametrize("damage", ["missing", "not ascii", "not json"])
def test_a_damaged_snapshot_file_is_an_error_naming_it(tmp_path, damage):
    store = JSONLCheckpointer(tmp_path / "store")
    build(store)
    snapshot = store.dir / "r1.snapshots" / "000000000001.json"
    if damage == "missing":
        snapshot.unlink()
    else:
        snapshot.write_bytes(b"\xff\xfe" if damage == "not ascii" else b"{")
    with pytest.raises(StoreCorrupted, match=str(snapshot)):
        JSONLCheckpointer(store.dir).load_latest("r1")
