"""The store contract, run against every backend (see conftest.BACKENDS)."""

from __future__ import annotations

from itertools import pairwise

import pytest

from purpose_agent.errors import SeqConflictError, SerializationError
from purpose_agent.runtime.checkpoint import Checkpointer
from purpose_agent.runtime.events import EventKind, PAEvent, Visibility, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import NodeState, NodeStatus, RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS


def progress(run_id: str, seq: int = 0, **payload: object) -> PAEvent:
    return create_event(run_id, PROGRESS, seq=seq, **payload)


def seqs(store, run_id: str, since: int = 0) -> list[int]:
    return [e.seq for e in store.list_events(run_id, since)]


def everything(store, run_id: str) -> tuple:
    """All a reader can see of one run, to compare before and after a refused write."""
    state = store.load_latest(run_id)
    info = store.run_info(run_id)
    return (
        [e.to_dict() for e in store.list_events(run_id)],
        state.to_dict() if state else None,
        info.to_dict() if info else None,
        store.list_history(run_id),
        [s.to_dict() for s in store.load_steps(run_id, 1)],
        store.next_seq(run_id),
        store.list_runs(),
    )


def test_every_backend_implements_the_protocol(store):
    assert isinstance(store, Checkpointer)


# ── events ──────────────────────────────────────────────────────────────────────


def test_save_event_takes_the_next_seq_and_returns_the_stored_event(store):
    saved = [store.save_event(progress("r1", i=i)) for i in range(5)]
    assert [e.seq for e in saved] == [1, 2, 3, 4, 5]
    assert store.next_seq("r1") == 6
    assert [e.payload["i"] for e in store.list_events("r1")] == [0, 1, 2, 3, 4]


def test_an_event_reads_back_with_every_field(store):
    event = PAEvent(run_id="r1", kind=EventKind.STEP_STARTED, node="search",
                    payload={"query": "tickets", "n": [1, 2.5, None, True]},
                    visibility=Visibility.INTERNAL, ts=1234.5)
    store.save_event(event)
    (back,) = store.list_events("r1")
    assert back.to_dict() == {**event.to_dict(), "seq": 1}
    assert back.kind is EventKind.STEP_STARTED and back.visibility is Visibility.INTERNAL


def test_list_events_since_seq_kinds_and_limit(store):
    kinds = [PROGRESS, EventKind.STEP_STARTED, PROGRESS, EventKind.STEP_COMPLETED, PROGRESS]
    for kind in kinds:
        store.save_event(create_event("r1", kind))
    assert seqs(store, "r1") == [1, 2, 3, 4, 5]
    assert seqs(store, "r1", since=2) == [3, 4, 5]
    assert seqs(store, "r1", since=5) == []
    assert [e.seq for e in store.list_events("r1", kinds=PROGRESS)] == [1, 3, 5]
    assert [e.seq for e in store.list_events("r1", kinds="tool.call")] == [2]
    both = store.list_events("r1", kinds=[EventKind.STEP_STARTED, "tool.result"])
    assert [e.seq for e in both] == [2, 4]
    assert [e.seq for e in store.list_events("r1", limit=2)] == [1, 2]
    assert [e.seq for e in store.list_events("r1", 1, kinds=PROGRESS, limit=1)] == [3]
    assert store.list_events("r1", kinds=["no.such.kind"]) == []


def test_an_unknown_run_has_no_events_state_or_info(store):
    assert store.list_events("nobody") == []
    assert store.load_latest("nobody") is None
    assert store.run_info("nobody") is None
    assert store.next_seq("nobody") == 1
    assert store.list_history("nobody") == []
    assert store.load_at("nobody", 0) is None
    assert store.load_steps("nobody", 1) == []
    assert store.list_runs() == []


# ── rule 2: seqs are contiguous ─────────────────────────────────────────────────


def test_an_explicit_seq_must_be_the_next_one(store):
    store.save_event(progress("r1", seq=1))
    store.save_event(progress("r1", seq=2))
    store.save_event(progress("r1"))
    with pytest.raises(SeqConflictError, match="gap"):
        store.save_event(progress("r1", seq=5))
    with pytest.raises(SeqConflictError, match="duplicate"):
        store.save_event(progress("r1", seq=3))
    with pytest.raises(SeqConflictError):
        store.save_event(progress("r1", seq=-1))
    assert seqs(store, "r1") == [1, 2, 3]
    assert store.save_event(progress("r1", seq=4)).seq == 4


def test_a_new_run_starts_at_seq_one(store):
    with pytest.raises(SeqConflictError):
        store.save_event(progress("fresh", seq=2))
    assert store.list_events("fresh") == []
    assert store.run_info("fresh") is None, "a refused first write must not create the run"
    assert store.list_runs() == []
    assert store.save_event(progress("fresh", seq=1)).seq == 1


def test_seqs_in_one_commit_follow_each_other(store):
    store.save_event(progress("r1"))
    result = store.commit("r1", Commit(events=[progress("r1"), progress("r1", seq=3),
                                               progress("r1")]))
    assert [e.seq for e in result.events] == [2, 3, 4]
    assert seqs(store, "r1") == [1, 2, 3, 4]


# ── runs: listing, info, deletion ───────────────────────────────────────────────


def _run(store, run_id: str, status: RunStatus = RunStatus.RUNNING, **data: object) -> RunState:
    state = RunState(run_id=run_id, status=status, purpose=f"purpose of {run_id}",
                     flow="triage", data=dict(data))
    store.save_snapshot(run_id, state)
    return state


def test_list_runs_newest_first_and_by_status(store):
    _run(store, "c", RunStatus.COMPLETED)
    _run(store, "a", RunStatus.PAUSED)
    _run(store, "b", RunStatus.COMPLETED)
    assert store.list_runs() == ["b", "a", "c"]
    assert store.list_runs(status=RunStatus.COMPLETED) == ["b", "c"]
    assert store.list_runs(status="paused") == ["a"]
    assert store.list_runs(status=RunStatus.FAILED) == []
    _run(store, "c", RunStatus.COMPLETED)  # updated again: newest now
    assert store.list_runs() == ["c", "b", "a"]


def test_list_run_infos_and_run_info(store):
    _run(store, "c", RunStatus.COMPLETED)
    _run(store, "a", RunStatus.PAUSED)
    _run(store, "b", RunStatus.COMPLETED)
    assert [i.run_id for i in store.list_run_infos()] == ["b", "a", "c"]
    assert [i.run_id for i in store.list_run_infos(limit=2)] == ["b", "a"]
    assert [i.run_id for i in store.list_run_infos(status="completed", limit=1)] == ["b"]
    info = store.run_info("a")
    assert (info.run_id, info.status, info.purpose, info.flow) == (
        "a", RunStatus.PAUSED, "purpose of a", "triage")


def test_a_run_known_only_by_its_events_is_listed(store):
    store.save_event(progress("only-events"))
    assert store.list_runs() == ["only-events"]
    assert store.run_info("only-events").status == RunStatus.PENDING


def test_delete_run_removes_only_that_run(store):
    _run(store, "keep", x=1)
    _run(store, "drop", x=2)
    store.save_event(progress("drop"))
    store.commit("drop", Commit(steps=[StepRecord("k", 1, "n", 0, "s", result=1)]))
    assert store.delete_run("drop") is True
    assert store.delete_run("drop") is False
    assert store.load_latest("drop") is None and store.run_info("drop") is None
    assert store.list_events("drop") == [] and store.next_seq("drop") == 1
    assert store.load_steps("drop", 1) == [] and store.list_history("drop") == []
    assert store.list_runs() == ["keep"]
    assert store.load_latest("keep").data == {"x": 1}
    store.save_event(progress("drop"))  # the id can be used again, from seq 1
    assert seqs(store, "drop") == [1]


# ── snapshots, deltas and history ───────────────────────────────────────────────


def test_save_snapshot_and_load_latest_round_trip(store):
    state = RunState(run_id="r1", status=RunStatus.PAUSED, purpose="p", flow="f",
                     flow_ref="mod:flow", current_node="b", current_step=2, max_steps=9,
                     data={"a": [1, {"b": None}], "s": "x"}, completed_nodes=["a", "b"],
                     pending={"question": "ok?"}, parent={"run_id": "r0", "step": 1})
    state.mark_node_started("b")
    state.mark_node_completed("b", output={"ok": True})
    state.cache_result("tool:1", {"v": 1})
    store.save_snapshot("r1", state)
    loaded = store.load_latest("r1")
    assert loaded is not state
    assert loaded.to_dict() == state.to_dict()
    assert isinstance(loaded.status, RunStatus)
    assert loaded.node_states["b"].status is NodeStatus.COMPLETED


def test_load_latest_replays_every_delta_operation_after_the_snapshot(store):
    start = RunState(run_id="r1", status=RunStatus.RUNNING,
                     data={"keep": 1, "msgs": ["hi"], "notes": [], "meta": {"a": 1}, "gone": 0})
    store.save_snapshot("r1", start)
    # The state passed with a delta-only commit supplies the header only; its data is
    # deliberately stale here, so the result can only come from replaying the ops.
    header_only = RunState(run_id="r1", status=RunStatus.RUNNING, data={"stale": True})
    deltas = [
        ("a", {"msgs": ["append", ["there"]], "new": ["set", [1, 2]]}),
        ("b", {"notes": ["extend", ["n1", "n2"]], "meta": ["merge", {"b": 2}]}),
        ("c", {"gone": ["delete"], "msgs": ["append", ["bye"]], "keep": ["set", 2]}),
        ("d", {"meta": ["merge", {"a": 3}], "fresh": ["extend", ["x"]],
               "fresh_map": ["merge", {"k": "v"}]}),
    ]
    for step, (node, ops) in enumerate(deltas, start=1):
        header_only.current_step, header_only.current_node = step, node
        node_state = NodeState(node, NodeStatus.COMPLETED, attempts=1).to_dict()
        store.commit("r1", Commit(state=header_only,
                                  delta=Delta(ops=ops, node=node, node_state=node_state)))
    loaded = store.load_latest("r1")
    assert loaded.data == {"keep": 2, "msgs": ["hi", "there", "bye"], "notes": ["n1", "n2"],
                           "meta": {"a": 3, "b": 2}, "new": [1, 2], "fresh": ["x"],
                           "fresh_map": {"k": "v"}}
    assert loaded.completed_nodes == ["a", "b", "c", "d"]
    assert set(loaded.node_states) == {"a", "b", "c", "d"}
    assert (loaded.current_step, loaded.current_node) == (4, "d")


def test_a_later_snapshot_is_the_new_base(store):
    state = RunState(run_id="r1", data={"n": 0})
    store.save_snapshot("r1", state)
    store.commit("r1", Commit(state=state, delta=Delta(ops={"n": ["set", 1]}, node="a")))
    state.data = {"n": 10, "log": ["s"]}
    store.commit("r1", Commit(state=state, delta=Delta(ops={"n": ["set", 10]}, node="b"),
                              snapshot=True))
    store.commit("r1", Commit(state=state, delta=Delta(ops={"log": ["append", ["t"]]}, node="c")))
    assert store.load_latest("r1").data == {"n": 10, "log": ["s", "t"]}


def _three_node_run(store) -> None:
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"trail": []})
    store.commit("r1", Commit(state=state, snapshot=True, events=[progress("r1")]))
    for step, node in enumerate(["a", "b", "c"], start=1):
        state.current_step, state.current_node = step, node
        state.data["trail"].append(node)
        state.completed_nodes.append(node)
        store.commit("r1", Commit(state=state, delta=Delta({"trail": ["append", [node]]}, node),
                                  snapshot=step == 2))
        if step == 2:  # a non-node commit of the same step (a pause) must not count
            state.status = RunStatus.PAUSED
            store.commit("r1", Commit(state=state, delta=Delta({"paused": ["set", True]})))
            state.status = RunStatus.RUNNING
            state.data["paused"] = True


def test_load_at_returns_the_state_right_after_each_node_execution(store):
    _three_node_run(store)
    assert store.load_at("r1", 0).data == {"trail": []}
    assert store.load_at("r1", 0).completed_nodes == []
    # step 1 lies before the snapshot written at step 2: it must not be used
    at1 = store.load_at("r1", 1)
    assert (at1.data, at1.completed_nodes, at1.current_node) == ({"trail": ["a"]}, ["a"], "a")
    at2 = store.load_at("r1", 2)
    assert (at2.data, at2.status) == ({"trail": ["a", "b"]}, RunStatus.RUNNING)
    assert store.load_at("r1", 3).data == {"trail": ["a", "b", "c"], "paused": True}
    assert store.load_at("r1", 4) is None
    assert store.load_latest("r1").completed_nodes == ["a", "b", "c"]


def test_list_history_lists_every_state_commit_oldest_first(store):
    _three_node_run(store)
    history = store.list_history("r1")
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert [(h["step"], h["node"], h["status"]) for h in history] == [
        (0, None, "running"), (1, "a", "running"), (2, "b", "running"),
        (2, None, "paused"), (3, "c", "running")]
    assert [h["current_node"] for h in history] == [None, "a", "b", "b", "c"]
    assert all(a["updated_at"] <= b["updated_at"] for a, b in pairwise(history))


def test_step_records_are_grouped_by_node_execution_and_ordered(store):
    recs = [StepRecord("k2", 1, "n", 1, "second", result=[2]),
            StepRecord("k1", 1, "n", 0, "first", result={"v": 1}),
            StepRecord("k3", 2, "m", 0, "other", kind="interrupt", status="waiting")]
    store.commit("r1", Commit(steps=recs))
    assert [r.name for r in store.load_steps("r1", 1)] == ["first", "second"]
    assert store.load_steps("r1", 1)[0].to_dict() == recs[1].to_dict()
    assert [r.status for r in store.load_steps("r1", 2)] == ["waiting"]
    answered = StepRecord("k3", 2, "m", 0, "other", kind="interrupt", result="yes")
    store.commit("r1", Commit(steps=[answered]))  # the same key replaces the record
    assert [(r.status, r.result) for r in store.load_steps("r1", 2)] == [("done", "yes")]


# ── rule 1: a commit lands whole or not at all ──────────────────────────────────


def _started(store) -> RunState:
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"n": 1})
    store.commit("r1", Commit(events=[progress("r1")], state=state, snapshot=True,
                              steps=[StepRecord("k0", 1, "a", 0, "s0", result=0)]))
    return state


def test_a_complete_commit_lands_events_state_and_steps_together(store):
    state = _started(store)
    state.current_step = 1
    result = store.commit("r1", Commit(
        events=[progress("r1"), progress("r1")], state=state,
        delta=Delta(ops={"n": ["set", 2]}, node="a"),
        steps=[StepRecord("k1", 1, "a", 1, "s1", result="r")]))
    assert [e.seq for e in result.events] == [2, 3]
    assert seqs(store, "r1") == [1, 2, 3]
    assert store.load_latest("r1").data == {"n": 2}
    assert [r.key for r in store.load_steps("r1", 1)] == ["k0", "k1"]


def test_a_commit_with_a_seq_conflict_writes_nothing(store):
    state = _started(store)
    before = everything(store, "r1")
    state.current_step, state.status = 1, RunStatus.COMPLETED
    bad = Commit(events=[progress("r1"), progress("r1", seq=7)], state=state,
                 delta=Delta(ops={"n": ["set", 99]}, node="a"), snapshot=True,
                 steps=[StepRecord("k1", 1, "a", 1, "s1", result="r")])
    with pytest.raises(SeqConflictError):
        store.commit("r1", bad)
    assert everything(store, "r1") == before


def test_a_commit_with_a_non_json_step_record_writes_nothing(store):
    state = _started(store)
    before = everything(store, "r1")
    state.current_step = 1
    bad = Commit(events=[progress("r1")], state=state,
                 delta=Delta(ops={"n": ["set", 99]}, node="a"),
                 steps=[StepRecord("k1", 1, "a", 1, "s1", result={"ok": 1}),
                        StepRecord("k2", 1, "a", 2, "s2", result={"when": {1, 2}})])
    with pytest.raises(SerializationError, match=r"s2\.result\.when"):
        store.commit("r1", bad)
    assert everything(store, "r1") == before


def test_a_commit_for_another_run_is_refused(store):
    state = _started(store)
    before = everything(store, "r1")
    with pytest.raises(ValueError):
        store.commit("r1", Commit(events=[progress("r2")]))
    with pytest.raises(ValueError):
        store.save_snapshot("r2", state)
    assert everything(store, "r1") == before and store.list_runs() == ["r1"]


# ── stored values are copies ────────────────────────────────────────────────────


def test_the_store_keeps_copies_not_references(store):
    state = RunState(run_id="r1", data={"items": [1, 2], "meta": {"k": "v"}})
    store.save_snapshot("r1", state)
    state.data["items"].append(3)
    state.data["meta"]["k"] = "changed"
    state.completed_nodes.append("x")
    loaded = store.load_latest("r1")
    assert loaded.data == {"items": [1, 2], "meta": {"k": "v"}}
    loaded.data["items"].clear()
    loaded.completed_nodes.append("y")
    again = store.load_latest("r1")
    assert again.data == {"items": [1, 2], "meta": {"k": "v"}} and again.completed_nodes == []

    payload = {"list": [1]}
    saved = store.save_event(PAEvent(run_id="r1", kind=PROGRESS, payload=payload))
    payload["list"].append(2)
    saved.payload["list"].append(3)
    store.list_events("r1")[0].payload["list"].append(4)
    assert store.list_events("r1")[0].payload == {"list": [1]}
