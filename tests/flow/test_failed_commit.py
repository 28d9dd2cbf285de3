"""A node whose completion cannot be committed leaves the run at that node.

The update is encoded once, before anything changes, and that text is what the commit
writes; a store that refuses the commit (a full disk) leaves the run as its last durable
commit has it, and resume re-executes the node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from crash_harness import CHILD, Child, result_of

from purpose_agent import END, Flow, JSONLCheckpointer, SQLiteCheckpointer, StoreError
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.owners import parse_owner


@pytest.fixture(params=["sqlite", "jsonl"])
def cp(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SQLiteCheckpointer(tmp_path / "runs.db")
    return JSONLCheckpointer(tmp_path / "runs")


def nested(depth: int, leaf: str = "é") -> object:
    value: object = leaf  # non-ASCII: the cheap check cannot vouch for it
    for _ in range(depth):
        value = [value]
    return value


def same_run(state, stored) -> bool:
    return (state.header(), state.data, state.completed_nodes) == (
        stored.header(), stored.data, stored.completed_nodes)


def three_nodes(deep_update) -> tuple[Flow, list[str]]:
    effects: list[str] = []
    flow = Flow("deep")

    @flow.node
    def first(ctx):
        return {"first": 1}

    @flow.node
    def deep(ctx):
        ctx.step("fetch", effects.append, "fetch")
        return deep_update(ctx)

    @flow.node
    def last(ctx):
        effects.append("last")
        return {"last": 1}

    flow.edge("first", "deep").edge("deep", "last").edge("last", END)
    return flow, effects


@pytest.mark.parametrize(("depth", "leaf"), [*((d, "é") for d in range(494, 504)),
                                            (497, "a"), (499, "a"), (600, "a"), (3000, "a")])
def test_a_deep_update_completes_or_fails_at_its_own_node(cp, depth, leaf):
    """Around the depth limit, an update is either committed whole or refused before
    anything changed; the failure always points at the node that returned it. (An ASCII
    leaf takes the encoder's fast path, a non-ASCII one the full check.)"""
    attempts = []

    def update(ctx):
        attempts.append(ctx.attempt)
        return {"tree": nested(depth, leaf)} if len(attempts) == 1 else {"tree": "flat"}

    flow, effects = three_nodes(update)
    state = flow.run({}, checkpointer=cp, run_id="r")
    stored = cp.load_latest("r")
    assert same_run(state, stored), "the state returned is the state stored"
    if state.status == "completed":
        assert stored.data["tree"] == nested(depth, leaf)
        assert stored.completed_nodes == ["first", "deep", "last"]
        return
    assert state.status == "failed"
    assert state.error["node"] == "deep" and state.error["type"] == "SerializationError"
    assert stored.current_node == "deep", "resume must re-execute the node, not skip it"
    assert stored.completed_nodes == ["first"] and "tree" not in stored.data
    assert effects == ["fetch"]
    finished = [e.node for e in cp.list_events("r", kinds=EventKind.NODE_COMPLETED)]
    assert finished == ["first"]

    done = flow.resume("r", checkpointer=cp)
    assert done.status == "completed" and done.data["tree"] == "flat"
    assert done.completed_nodes == ["first", "deep", "last"]
    assert effects == ["fetch", "last"], "the node's step replayed, the next node ran once"


@pytest.mark.parametrize("depth", [497, 498, 499, 500])
def test_a_deep_progress_payload_fails_where_it_is_emitted(cp, depth):
    """ctx.emit checks its payload as the commit will store it: a payload the commit
    would refuse is refused by emit, in the node, not by the node's completion."""
    flow = Flow("deep-emit")

    @flow.node
    def talk(ctx):
        ctx.emit("progress", tree=nested(depth))
        return {"talked": True}

    @flow.node
    def after(ctx):
        return {"after": True}

    flow.edge("talk", "after").edge("after", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    stored = cp.load_latest("r")
    assert same_run(state, stored)
    if state.status == "failed":
        assert stored.current_node == "talk" and stored.completed_nodes == []
        assert "talked" not in stored.data
    else:
        assert state.status == "completed"
        assert cp.list_events("r", kinds=EventKind.NODE_PROGRESS)[0].payload["tree"] == \
            nested(depth)


def test_a_full_disk_at_a_node_completion_leaves_the_run_at_that_node(tmp_path):
    """A real SQLite file whose size limit is reached while the node commits: the commit
    fails, nothing of it lands, and the run resumes at that node once space is freed."""
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow, effects = three_nodes(lambda ctx: {"tree": "x" * 200_000})

    def fill_the_disk(ctx):
        pages = cp._db.execute("PRAGMA page_count").fetchone()[0]
        cp._db.execute(f"PRAGMA max_page_count = {pages + 2}")
        return {"first": 1}

    flow.add(fill_the_disk, name="fill")
    flow.entry("fill").edge("fill", "first")
    with pytest.raises(StoreError, match="full"):
        flow.run({}, checkpointer=cp, run_id="r")

    reader = SQLiteCheckpointer(tmp_path / "runs.db")
    stored = reader.load_latest("r")
    assert stored.status == "running" and stored.current_node == "deep"
    assert stored.completed_nodes == ["fill", "first"] and "tree" not in stored.data
    assert effects == ["fetch"]
    assert reader.run_info("r").owner is None, "the driver gave its lease back"

    cp._db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    done = flow.resume("r", checkpointer=cp)
    assert done.status == "completed" and len(done.data["tree"]) == 200_000
    assert effects == ["fetch", "last"], "the node's step replayed from the journal"
    seqs = [e.seq for e in reader.list_events("r")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_file_that_cannot_grow_at_a_node_completion_leaves_the_run_at_that_node(
        file_child: Child, tmp_path: Path):
    """A real child process whose files may not grow (RLIMIT_FSIZE) past a point: the
    node's completion is refused by the kernel, on SQLite and on JSONL alike. The run is
    left at that node, its lease given back, and a new process resumes it."""
    env = file_child.env(None)
    env["LIMIT_FILES_IN"] = str(tmp_path)
    args = [sys.executable, str(CHILD), "run", "full-disk", file_child.url, "r1"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=CHILD.parent)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 4), (proc.returncode, out, err)
    cp = file_child.store()
    stored = cp.load_latest("r1")
    assert stored.status in ("running", "failed"), stored.status
    assert stored.current_node == "big" and stored.completed_nodes == ["fill"]
    assert "tree" not in stored.data
    # The driver gives its lease back when the store still takes that small write (JSONL
    # does: the lease is a file of its own); SQLite's WAL cannot grow for it either, and
    # the dead owner's run is taken over at once on this host.
    owner = cp.run_info("r1").owner
    if file_child.url.startswith("jsonl"):
        assert owner is None, owner
    else:
        assert owner is None or parse_owner(owner).pid == proc.pid, owner
    if stored.status == "failed":
        assert stored.error["node"] == "big"

    done = result_of(file_child("resume", "full-disk", "r1"))  # a new process
    assert done["status"] == "completed" and len(done["data"]["tree"]) == 300_000
    assert file_child.effects_lines() == ["fill", "fetch"], "no step ran twice"
    seqs = [e.seq for e in cp.list_events("r1")]
    assert seqs == list(range(1, len(seqs) + 1))
