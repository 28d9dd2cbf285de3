"""Rule 8: the JSONL store — torn lines, fsync, atomic snapshots, plain files."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import JSONLCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta
from purpose_agent.runtime.state import RunState

PROGRESS = EventKind.NODE_PROGRESS


@pytest.fixture
def store(tmp_path: Path) -> JSONLCheckpointer:
    return JSONLCheckpointer(tmp_path / "store")


def _event(n: int):
    return create_event("r1", PROGRESS, n=n)


def _journal(store: JSONLCheckpointer) -> Path:
    return store.dir / "r1.jsonl"


def _quiet_seqs(store: JSONLCheckpointer) -> list[int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [e.seq for e in store.list_events("r1")]


# ── plain files ─────────────────────────────────────────────────────────────────


def test_the_journal_is_one_json_line_per_commit(store):
    store.save_event(_event(1))
    state = RunState(run_id="r1", data={"x": 1})
    store.save_snapshot("r1", state)
    store.commit("r1", Commit(events=[_event(2), _event(3)], state=state,
                              delta=Delta({"x": ["set", 2]}, node="a")))
    lines = _journal(store).read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    records = [json.loads(line) for line in lines[:-1]]
    assert [[e["seq"] for e in r["events"]] for r in records] == [[1], [], [2, 3]]
    assert [r.get("version") for r in records] == [None, 1, 2]
    assert records[2]["delta"]["ops"] == {"x": ["set", 2]}
    assert sorted(p.name for p in (store.dir / "r1.snapshots").iterdir()) == ["000000000001.json"]


# ── torn last line ──────────────────────────────────────────────────────────────


def test_a_torn_last_line_is_skipped_with_a_warning_and_earlier_lines_survive(store):
    for n in range(3):
        store.save_event(_event(n))
    with open(_journal(store), "ab") as f:
        f.write(b'{"events":[{"event_id":"x","run_id":"r1","kind":"agent.prog')
    fresh = JSONLCheckpointer(store.dir)  # a reader after the power cut
    with pytest.warns(RuntimeWarning, match="torn last line"):
        events = fresh.list_events("r1")
    assert [e.payload["n"] for e in events] == [0, 1, 2]
    with pytest.warns(RuntimeWarning, match="torn"):
        assert fresh.next_seq("r1") == 4


def test_the_next_append_after_a_torn_line_starts_on_a_fresh_line(store):
    store.save_event(_event(0))
    with open(_journal(store), "ab") as f:
        f.write(b"\x00\x00garbage{{")
    writer = JSONLCheckpointer(store.dir)
    with pytest.warns(RuntimeWarning):
        saved = writer.save_event(_event(1))
    assert saved.seq == 2
    lines = _journal(store).read_bytes().split(b"\n")
    assert lines[-1] == b"", "the journal ends with a complete line"
    assert json.loads(lines[-2])["events"][0]["payload"] == {"n": 1}
    assert _quiet_seqs(JSONLCheckpointer(store.dir)) == [1, 2]
    assert writer.save_event(_event(2)).seq == 3
    assert _quiet_seqs(writer) == [1, 2, 3]


def test_a_torn_line_that_lost_only_its_newline_never_comes_back(store):
    """A complete record without its newline never committed; the next append must not
    turn it into a committed line (that would duplicate seq 2)."""
    store.save_event(_event(0))
    ghost = create_event("r1", PROGRESS, seq=2, n="ghost").to_json()
    with open(_journal(store), "ab") as f:
        f.write(('{"events":[' + ghost + "]}").encode())
    writer = JSONLCheckpointer(store.dir)
    with pytest.warns(RuntimeWarning, match="torn"):
        assert writer.save_event(_event(1)).seq == 2
    events = JSONLCheckpointer(store.dir).list_events("r1")
    assert [(e.seq, e.payload["n"]) for e in events] == [(1, 0), (2, 1)]


def test_a_torn_commit_leaves_the_previous_state_loadable(store):
    state = RunState(run_id="r1", data={"n": 1})
    store.save_snapshot("r1", state)
    with open(_journal(store), "ab") as f:
        f.write(b'{"events":[],"version":2,"step":0,"node":null,"delta":{"ops":{"n":["set"')
    with pytest.warns(RuntimeWarning):
        assert JSONLCheckpointer(store.dir).load_latest("r1").data == {"n": 1}


# ── fsync and atomic snapshots ──────────────────────────────────────────────────


def _record_fsyncs(monkeypatch) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_every_append_is_fsynced_and_a_new_journal_syncs_its_directory(store, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    store.save_event(_event(0))
    assert synced == [str(_journal(store)), str(store.dir)]
    synced.clear()
    store.save_event(_event(1))
    store.commit("r1", Commit(events=[_event(2)]))
    assert synced == [str(_journal(store))] * 2


def test_a_snapshot_is_fsynced_renamed_into_place_and_its_directory_fsynced(store, monkeypatch):
    store.save_event(_event(0))
    synced = _record_fsyncs(monkeypatch)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def replace(src, dst) -> None:
        # at the moment of the rename the temp file is complete, fsynced JSON
        assert json.loads(Path(src).read_text())["data"] == {"big": "x" * 100_000}
        assert str(src) in synced
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    store.save_snapshot("r1", RunState(run_id="r1", data={"big": "x" * 100_000}))
    snap_dir = store.dir / "r1.snapshots"
    final = snap_dir / "000000000001.json"
    ((src, dst),) = renames
    assert dst == str(final) and Path(src).parent == snap_dir and src != dst
    assert synced.index(str(snap_dir)) > synced.index(src), "the directory is synced after"
    assert synced[-1] == str(_journal(store)), "the journal line comes after the snapshot"
    assert json.loads(final.read_text())["data"] == {"big": "x" * 100_000}
    assert [p.name for p in snap_dir.iterdir()] == [final.name], "no temp file left"
    assert not [p for p in store.dir.rglob("*") if p.name.endswith(".tmp")]


def _failing_fsync(monkeypatch, when) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if when(os.readlink(f"/proc/self/fd/{fd}")):
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_an_fsync_error_on_the_journal_fails_the_write(store, monkeypatch):
    store.save_event(_event(0))
    with monkeypatch.context() as m:
        _failing_fsync(m, lambda path: path.endswith(".jsonl"))
        with pytest.raises(StoreError, match="Input/output error"):
            store.save_event(_event(1))
    # the failed write is not counted as committed: the next one takes its seq
    assert store.save_event(_event(2)).seq == 2
    assert [e.payload["n"] for e in JSONLCheckpointer(store.dir).list_events("r1")] == [0, 2]


def test_an_fsync_error_on_the_directory_fails_the_write(store, monkeypatch):
    with monkeypatch.context() as m:
        _failing_fsync(m, lambda path: path == str(store.dir))
        with pytest.raises(StoreError):
            store.save_event(_event(0))
    assert store.list_events("r1") == []
    assert store.save_event(_event(1)).seq == 1


def test_an_fsync_error_on_a_snapshot_fails_the_commit_and_leaves_no_temp_file(store,
                                                                              monkeypatch):
    state = RunState(run_id="r1", data={"v": 1})
    store.save_snapshot("r1", state)
    state.data = {"v": 2}
    with monkeypatch.context() as m:
        _failing_fsync(m, lambda path: path.endswith(".tmp"))
        with pytest.raises(StoreError, match="Input/output error"):
            store.save_snapshot("r1", state)
    assert store.load_latest("r1").data == {"v": 1}
    assert len(store.list_history("r1")) == 1
    assert not [p for p in store.dir.rglob("*") if p.name.endswith(".tmp")]


# ── several writers of one directory ────────────────────────────────────────────


def test_two_store_objects_on_one_directory_see_each_others_appends(store):
    other = JSONLCheckpointer(store.dir)
    store.save_event(_event(0))
    assert other.save_event(_event(1)).seq == 2
    assert store.save_event(_event(2)).seq == 3
    assert [e.seq for e in other.list_events("r1")] == [1, 2, 3]


def test_runs_listed_from_the_directory_ignore_other_files(store):
    store.save_event(_event(0))
    (store.dir / "notes.txt").write_text("not a run")
    (store.dir / "r1.lease.json").write_text('{"owner":null,"expires_at":null,"fence":0}')
    assert JSONLCheckpointer(store.dir).list_runs() == ["r1"]


def test_a_store_whose_directory_was_removed_says_so(store):
    import shutil

    shutil.rmtree(store.dir)
    with pytest.raises(StoreError, match=r"directory .* is gone"):
        store.save_event(create_event("r1", EventKind.NODE_PROGRESS))
