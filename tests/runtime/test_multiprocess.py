"""Rules 2 and 9 under contention: several real processes write one store at once."""

from __future__ import annotations

import json
import signal
import warnings

from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.state import RunState

WRITER = """
    import sys
    from purpose_agent.runtime.checkpoint import open_checkpointer
    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.journal import Commit, Delta
    from purpose_agent.runtime.state import RunState

    url, name, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    cp = open_checkpointer(url)
    print("ready", flush=True)
    sys.stdin.readline()  # all writers start together
    state = RunState(run_id="shared")
    for i in range(count):
        event = create_event("shared", EventKind.NODE_PROGRESS, writer=name, i=i)
        if mode == "commit":
            state.current_step = i
            cp.commit("shared", Commit(events=[event, create_event(
                "shared", EventKind.STATE_UPDATED, writer=name, i=i)], state=state,
                delta=Delta({"log": ["append", [f"{name}:{i}"]]}, node=name)))
        else:
            cp.save_event(event)
    print("done", flush=True)
"""


def _run_writers(spawn, url: str, writers: int, count: int, mode: str = "events") -> None:
    children = [spawn(WRITER, url, f"w{n}", str(count), mode) for n in range(writers)]
    for child in children:
        assert child.readline() == "ready"
    for child in children:
        child.send("go")
    for child in children:
        assert child.readline() == "done"
        child.finish()


def _check_each_writer_in_order(payloads: list[dict], writers: int, count: int) -> None:
    for n in range(writers):
        mine = [p["i"] for p in payloads if p["writer"] == f"w{n}"]
        assert mine == list(range(count)), f"writer w{n} lost or reordered events"


def test_concurrent_appends_get_contiguous_seqs(spawn, shared):
    writers, count = 4, 100
    _run_writers(spawn, shared.url, writers, count)
    events = shared.reopen().list_events("shared")
    assert [e.seq for e in events] == list(range(1, writers * count + 1))
    assert len({e.event_id for e in events}) == writers * count
    _check_each_writer_in_order([e.payload for e in events], writers, count)


def test_concurrent_commits_keep_events_and_state_history_whole(spawn, shared):
    writers, count = 3, 40
    _run_writers(spawn, shared.url, writers, count, mode="commit")
    store = shared.reopen()
    events = store.list_events("shared")
    assert [e.seq for e in events] == list(range(1, 2 * writers * count + 1))
    # the two events of one commit are always next to each other
    for first, second in zip(events[::2], events[1::2], strict=True):
        assert (first.payload, str(second.kind)) == (second.payload, "state.updated")
    history = store.list_history("shared")
    assert [h["version"] for h in history] == list(range(1, writers * count + 1))
    log = store.load_latest("shared").data["log"]
    assert sorted(log) == sorted(f"w{n}:{i}" for n in range(writers) for i in range(count))
    order = [h["node"] for h in history]
    assert [entry.split(":")[0] for entry in log] == order, "deltas replay in commit order"


OPENER = """
    import sys
    from purpose_agent.runtime.checkpoint import SQLiteCheckpointer
    from purpose_agent.runtime.events import EventKind, create_event

    directory, files, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for f in range(files):
        print("ready", flush=True)
        sys.stdin.readline()  # all openers open file f together
        cp = SQLiteCheckpointer(f"{directory}/new-{f}.db")
        for i in range(count):
            cp.save_event(create_event("shared", EventKind.NODE_PROGRESS, i=i))
        cp.close()
    print("done", flush=True)
"""


def test_processes_creating_the_same_new_sqlite_files_together_all_succeed(spawn, tmp_path):
    openers, files, count = 4, 10, 5
    children = [spawn(OPENER, str(tmp_path), str(files), str(count)) for _ in range(openers)]
    for _ in range(files):
        for child in children:  # a child that hit "database is locked" fails here
            assert child.readline() == "ready"
        for child in children:
            child.send("go")
    for child in children:
        assert child.readline() == "done"
        child.finish()
    for f in range(files):
        events = SQLiteCheckpointer(tmp_path / f"new-{f}.db").list_events("shared")
        assert [e.seq for e in events] == list(range(1, openers * count + 1))


READER = """
    import json, sys
    from purpose_agent.runtime.checkpoint import open_checkpointer

    cp, total = open_checkpointer(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    reads, seen = 0, 0
    while seen < total:
        seqs = [e.seq for e in cp.list_events("shared")]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        assert len(seqs) >= seen, "a read went backwards"
        seen, reads = len(seqs), reads + 1
    print(json.dumps({"reads": reads, "seen": seen}), flush=True)
"""


def test_a_reader_never_sees_a_gap_while_others_write(spawn, shared):
    writers, count = 3, 80
    reader = spawn(READER, shared.url, str(writers * count))
    assert reader.readline() == "ready"
    _run_writers(spawn, shared.url, writers, count)
    result = json.loads(reader.readline())
    assert result["seen"] == writers * count and result["reads"] >= 1
    reader.finish()


def test_a_store_reopened_in_another_process_reads_what_was_committed(spawn, shared):
    shared.store.save_snapshot("r1", RunState(run_id="r1", data={"from": "parent"}))
    child = spawn("""
        import sys
        from purpose_agent.runtime.checkpoint import open_checkpointer
        print(open_checkpointer(sys.argv[1]).load_latest("r1").data["from"], flush=True)
    """, shared.url)
    assert child.readline() == "parent"
    child.finish()


KILLED_WRITER = """
    import sys
    from purpose_agent.runtime.checkpoint import open_checkpointer
    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.journal import Commit, Delta
    from purpose_agent.runtime.state import RunState

    cp = open_checkpointer(sys.argv[1])
    state = RunState(run_id="killed", data={"log": []})
    i = 0
    while True:
        i += 1
        state.current_step = i
        state.data["log"].append(i)
        state.data["pad"] = "z" * 50_000
        cp.commit("killed", Commit(
            events=[create_event("killed", EventKind.NODE_COMPLETED, i=i)], state=state,
            delta=Delta({"log": ["append", [i]], "pad": ["set", state.data["pad"]]}, node="n"),
            snapshot=i % 3 == 0))
        if i == 20:
            print("committed 20", flush=True)
"""


def test_a_writer_killed_mid_commit_leaves_events_and_state_in_agreement(spawn, shared):
    child = spawn(KILLED_WRITER, shared.url)
    assert child.readline() == "committed 20"
    child.proc.send_signal(signal.SIGKILL)  # somewhere in a later commit, wherever it is
    child.proc.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a torn last line is allowed
        store = shared.reopen()
        events = store.list_events("killed")
        state = store.load_latest("killed")
        assert len(events) >= 20
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert state.data["log"] == [e.payload["i"] for e in events]
        assert state.current_step == len(events) == len(store.list_history("killed"))
        store.save_event(create_event("killed", EventKind.RUN_RESUMED))
        assert store.next_seq("killed") == len(events) + 2
