"""The engine in one process: routing, reducers, retries, timeouts, limits, fork, async."""

from __future__ import annotations

import asyncio
import time
from itertools import pairwise

import pytest

from purpose_agent import (
    END,
    Flow,
    FlowChangedError,
    FlowDefinitionError,
    InMemoryCheckpointer,
    JSONLCheckpointer,
    RunStateError,
    SQLiteCheckpointer,
    open_checkpointer,
    step,
)
from purpose_agent.runtime.events import EventKind


@pytest.fixture(params=["memory", "sqlite", "jsonl", "postgres"])
def cp(request, tmp_path):
    if request.param == "memory":
        store = InMemoryCheckpointer()
    elif request.param == "sqlite":
        store = SQLiteCheckpointer(tmp_path / "runs.db")
    elif request.param == "jsonl":
        store = JSONLCheckpointer(tmp_path / "runs")
    else:  # on the session's PostgreSQL server (tests/conftest.py)
        store = open_checkpointer(request.getfixturevalue("pg_url"))
    yield store
    store.close()


def seqs_are_contiguous(cp, run_id: str) -> bool:
    seqs = [e.seq for e in cp.list_events(run_id)]
    return seqs == list(range(1, len(seqs) + 1))


def test_routing_loop_with_reducers(cp) -> None:
    flow = Flow("loop", reducers={"seen": "append", "tags": "extend", "meta": "merge",
                                  "total": lambda old, new: (old or 0) + new})

    @flow.node
    def work(ctx):
        n = ctx.data.get("n", 0) + 1
        return {"n": n, "seen": n, "tags": [f"t{n}"], "meta": {f"k{n}": n}, "total": n}

    flow.route("work", lambda data: "work" if data["n"] < 4 else END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    expected = {"n": 4, "seen": [1, 2, 3, 4], "tags": ["t1", "t2", "t3", "t4"],
                "meta": {"k1": 1, "k2": 2, "k3": 3, "k4": 4}, "total": 10}
    assert state.status == "completed" and state.data == expected
    assert cp.load_latest("r").data == expected  # snapshot + deltas replay to the same
    assert cp.load_latest("r").completed_nodes == ["work"] * 4
    assert seqs_are_contiguous(cp, "r")


def test_long_runs_load_from_snapshot_plus_deltas(cp) -> None:
    flow = Flow("grow", reducers={"items": "append"}, max_steps=500)

    @flow.node
    def add(ctx):
        return {"items": "x" * 100, "count": ctx.data.get("count", 0) + 1}

    flow.route("add", lambda d: "add" if d["count"] < 150 else END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    loaded = cp.load_latest("r")
    assert loaded.data == state.data and len(loaded.data["items"]) == 150
    assert loaded.current_step == 150
    # Time travel reads the state after any step.
    at_40 = cp.load_at("r", 40)
    assert at_40.data["count"] == 40 and len(at_40.data["items"]) == 40


@pytest.mark.parametrize("size", [10, 10_000])
def test_the_initial_data_is_journaled_whatever_its_size(cp, size) -> None:
    """Small initial data rides in the first delta, large data starts a snapshot: both
    load back at step 0, after a crash before the first node, and after the run."""
    flow = Flow("start", reducers={"items": "append"})

    @flow.node
    def first(ctx):
        if ctx.data.get("stop"):
            raise KeyboardInterrupt  # as a crash before the first commit of a node
        return {"items": "next"}

    flow.edge("first", END)
    initial = {"items": ["a"], "text": "t" * size, "nested": {"k": [1, 2.5, None]}}
    state = flow.run(initial, checkpointer=cp, run_id="r")
    assert state.data == {**initial, "items": ["a", "next"]}
    assert cp.load_at("r", 0).data == initial
    assert cp.load_latest("r").data == state.data
    with pytest.raises(KeyboardInterrupt):
        flow.run({**initial, "stop": True}, checkpointer=cp, run_id="crashed")
    assert cp.load_latest("crashed").data == {**initial, "stop": True}
    if isinstance(cp, SQLiteCheckpointer):
        snapshots = cp._db.execute("SELECT count(*) FROM snapshots").fetchone()[0]
        assert snapshots == (0 if size < 4096 else 2)


def test_failing_node_retries_and_replays_its_completed_steps(cp) -> None:
    calls = {"fetch": 0, "node": 0}
    flow = Flow("retry")

    def fetch():
        calls["fetch"] += 1
        return "payload"

    @flow.node(retries=2, backoff=0)
    def flaky(ctx):
        calls["node"] += 1
        got = ctx.step("fetch", fetch)
        if calls["node"] < 3:
            raise ConnectionError("upstream hiccup")
        return {"got": got}

    flow.edge("flaky", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "completed" and state.data == {"got": "payload"}
    assert calls == {"fetch": 1, "node": 3}
    errors = cp.list_events("r", kinds=EventKind.NODE_FAILED)
    assert [e.payload["attempt"] for e in errors] == [1, 2]


def test_exhausted_retries_fail_the_run_and_resume_retries_the_node(cp) -> None:
    healthy = {"ok": False}
    flow = Flow("fails")

    @flow.node(retries=1, backoff=0)
    def breaks(ctx):
        if not healthy["ok"]:
            raise ValueError("bad input 42")
        return {"fixed": True}

    flow.edge("breaks", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "failed"
    assert state.error.pop("traceback").rstrip().endswith("ValueError: bad input 42")
    assert state.error == {"type": "ValueError", "message": "bad input 42", "node": "breaks",
                           "attempt": 2}
    error = cp.list_events("r", kinds=EventKind.RUN_ERROR)[-1]
    assert error.payload["type"] == "ValueError" and error.payload["node"] == "breaks"
    healthy["ok"] = True
    assert flow.resume("r", checkpointer=cp).status == "completed"
    assert seqs_are_contiguous(cp, "r")


def test_timeout_fails_an_attempt(cp) -> None:
    flow = Flow("slow")

    @flow.node(timeout=0.2)
    def slow(ctx):
        try:
            time.sleep(5)  # the workload being timed out
        except Exception:  # a broad handler in user code does not swallow the timeout
            return {"swallowed": True}

    flow.edge("slow", END)
    started = time.monotonic()
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert time.monotonic() - started < 4
    assert state.status == "failed" and state.error["type"] == "NodeTimeout"


def test_max_steps_stops_an_endless_loop(cp) -> None:
    flow = Flow("endless", max_steps=7)

    @flow.node
    def spin(ctx):
        return {"i": ctx.data.get("i", 0) + 1}

    flow.route("spin", lambda d: "spin")
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "failed" and state.error["type"] == "MaxStepsExceeded"
    assert state.data["i"] == 7 and "max_steps" in state.error["message"]


def test_default_max_steps_never_stops_an_acyclic_flow() -> None:
    flow = Flow("chain")
    names = [f"n{i}" for i in range(30)]
    for name in names:
        flow.add(lambda ctx: None, name=name)
    for a, b in pairwise(names):
        flow.edge(a, b)
    flow.edge(names[-1], END)
    assert flow.max_steps >= 10 * len(names)
    assert flow.run({}, checkpointer=InMemoryCheckpointer()).status == "completed"


def test_non_json_update_fails_the_run_naming_the_key_and_keeps_data(cp) -> None:
    flow = Flow("bad")

    @flow.node
    def good(ctx):
        return {"kept": [1, 2]}

    @flow.node
    def bad(ctx):
        return {"result": {"tags": {"a", "b"}}}

    flow.edge("good", "bad").edge("bad", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "failed" and state.error["type"] == "SerializationError"
    assert "$.update[bad].result.tags" in state.error["message"]
    assert cp.load_latest("r").data == {"kept": [1, 2]}


def test_fork_starts_a_new_run_and_leaves_the_original_untouched(cp) -> None:
    effects = []
    flow = Flow("forkable")

    @flow.node
    def a(ctx):
        return {"a": ctx.step("a", lambda: effects.append("a") or 1)}

    @flow.node
    def b(ctx):
        return {"b": ctx.data["a"] + ctx.data.get("bonus", 0)}

    flow.edge("a", "b").edge("b", END)
    flow.run({}, checkpointer=cp, run_id="orig")
    before = [e.to_dict() for e in cp.list_events("orig")]
    fork = flow.fork("orig", at_step=1, checkpointer=cp, update={"bonus": 10}, new_run_id="f")
    assert fork.status == "pending" and fork.current_node == "b"
    assert fork.parent == {"run_id": "orig", "step": 1}
    done = flow.resume("f", checkpointer=cp)
    assert done.status == "completed" and done.data == {"a": 1, "b": 11, "bonus": 10}
    assert cp.load_latest("orig").data == {"a": 1, "b": 1}
    assert [e.to_dict() for e in cp.list_events("orig")] == before
    assert effects == ["a"]  # step a was not re-run for the fork
    with pytest.raises(RunStateError, match=r"has no node execution 9 to fork after; its "
                                            r"executions are 0\.\.2"):
        flow.fork("orig", at_step=9, checkpointer=cp)


def test_cancel_a_paused_run(cp) -> None:
    flow = Flow("ask")

    @flow.node
    def ask(ctx):
        return {"answer": ctx.interrupt("ok?")}

    flow.edge("ask", END)
    assert flow.run({}, checkpointer=cp, run_id="r").status == "paused"
    assert flow.cancel("r", checkpointer=cp).status == "cancelled"
    assert cp.load_latest("r").status == "cancelled"
    with pytest.raises(RunStateError, match="cancelled"):
        flow.resume("r", checkpointer=cp, answer="yes")


def test_several_interrupts_in_one_node_match_by_order(cp) -> None:
    flow = Flow("two-questions")
    asked = []

    @flow.node
    def form(ctx):
        name = ctx.interrupt("name?")
        asked.append(name)
        city = ctx.interrupt("city?")
        return {"name": name, "city": city}

    flow.edge("form", END)
    assert flow.run({}, checkpointer=cp, run_id="r").pending["payload"] == "name?"
    assert flow.resume("r", checkpointer=cp, answer="Ada").pending["payload"] == "city?"
    done = flow.resume("r", checkpointer=cp, answer="London")
    assert done.data == {"name": "Ada", "city": "London"}
    assert asked == ["Ada", "Ada"]


def test_same_step_twice_in_a_node_is_two_calls(cp) -> None:
    counter = {"n": 0}
    flow = Flow("twice")

    def tick():
        counter["n"] += 1
        return counter["n"]

    @flow.node
    def node(ctx):
        first, second = ctx.step("tick", tick), ctx.step("tick", tick)
        answer = ctx.interrupt("go?")
        return {"ticks": [first, second], "answer": answer}

    flow.edge("node", END)
    flow.run({}, checkpointer=cp, run_id="r")
    done = flow.resume("r", checkpointer=cp, answer=True)
    assert done.data["ticks"] == [1, 2] and counter["n"] == 2


def test_changed_flow_is_detected_at_resume_and_nothing_is_replayed_into_it(cp) -> None:
    v1 = Flow("evolving")

    @v1.node
    def work(ctx):
        ctx.step("charge", lambda: "charged")
        return {"ok": ctx.interrupt("confirm?")}

    v1.edge("work", END)
    v1.run({}, checkpointer=cp, run_id="r")

    v2 = Flow("evolving")
    ran = []

    @v2.node
    def work(ctx):  # noqa: F811 - the same node, rewritten
        ctx.step("refund", lambda: ran.append("refund"))
        return {"ok": True}

    v2.edge("work", END)
    state = v2.resume("r", checkpointer=cp, answer=True)
    assert state.status == "failed" and state.error["type"] == "FlowChangedError"
    assert "'charge'" in state.error["message"] and "'refund'" in state.error["message"]
    assert ran == []


def test_resume_with_a_flow_missing_the_current_node_is_refused(cp) -> None:
    v1 = Flow("shrinking")
    v1.add(lambda ctx: ctx.interrupt("?"), name="gone")
    v1.edge("gone", END)
    v1.run({}, checkpointer=cp, run_id="r")
    v2 = Flow("shrinking")
    v2.add(lambda ctx: None, name="other")
    v2.edge("other", END)
    with pytest.raises(FlowChangedError, match="'gone'"):
        v2.resume("r", checkpointer=cp, answer=1)


def test_pause_survives_a_broad_except_in_user_code(cp) -> None:
    flow = Flow("broad")

    @flow.node
    def node(ctx):
        try:
            return {"a": ctx.interrupt("?")}
        except Exception:
            return {"a": "swallowed"}

    flow.edge("node", END)
    assert flow.run({}, checkpointer=cp, run_id="r").status == "paused"


def test_async_nodes_and_async_steps(cp) -> None:
    calls = []
    flow = Flow("async")

    @step
    async def fetch(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        return x * 10

    @flow.node
    async def first(ctx):
        return {"v": await fetch(4)}

    @flow.node
    async def second(ctx):
        again = await fetch(5)  # before the interrupt: replayed when the node re-executes
        return {"answer": ctx.interrupt({"v": ctx.data["v"]}), "again": again}

    flow.edge("first", "second").edge("second", END)
    state = asyncio.run(flow.arun({}, checkpointer=cp, run_id="r"))
    assert state.status == "paused"
    done = asyncio.run(flow.aresume("r", checkpointer=cp, answer="ok"))
    assert done.data == {"v": 40, "answer": "ok", "again": 50}
    assert calls == [4, 5]


def test_async_node_under_the_sync_driver(cp) -> None:
    flow = Flow("mixed")

    @flow.node
    async def only(ctx):
        await asyncio.sleep(0)
        return {"done": True}

    flow.edge("only", END)
    assert flow.run({}, checkpointer=cp, run_id="r").data == {"done": True}


def test_definition_errors_are_clear() -> None:
    flow = Flow("bad")

    @flow.node
    def a(ctx):
        return None

    with pytest.raises(FlowDefinitionError, match="already has a node 'a'"):
        flow.add(lambda ctx: None, name="a")
    with pytest.raises(FlowDefinitionError, match="'nope': flow 'bad' has no such node"):
        flow.edge("a", "nope")
    with pytest.raises(FlowDefinitionError, match="has no way out"):
        flow.run({}, checkpointer=InMemoryCheckpointer())
    flow.edge("a", END)
    with pytest.raises(FlowDefinitionError, match="already has a way out"):
        flow.route("a", lambda d: END)
    with pytest.raises(FlowDefinitionError, match="reducer"):
        Flow("x", reducers={"k": "sum"})


def test_route_to_an_unknown_node_fails_the_run_with_a_clear_error(cp) -> None:
    flow = Flow("lost")
    flow.add(lambda ctx: {"x": 1}, name="a")
    flow.route("a", lambda d: "nowhere")
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "failed" and "'nowhere'" in state.error["message"]
    assert cp.load_latest("r").data == {}


def test_run_id_taken_is_refused(cp) -> None:
    flow = Flow("once")
    flow.add(lambda ctx: None, name="a")
    flow.edge("a", END)
    flow.run({}, checkpointer=cp, run_id="r")
    with pytest.raises(RunStateError, match="already exists"):
        flow.run({}, checkpointer=cp, run_id="r")



def test_default_store_is_sqlite_under_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PURPOSE_AGENT_DB", raising=False)
    flow = Flow("defaults")
    flow.add(lambda ctx: {"ok": True}, name="a")
    flow.edge("a", END)
    assert flow.run({}, run_id="r").status == "completed"
    assert (tmp_path / ".purpose_agent" / "runs.db").exists()
    assert SQLiteCheckpointer(tmp_path / ".purpose_agent" / "runs.db").load_latest("r").data == {
        "ok": True}
    monkeypatch.setenv("PURPOSE_AGENT_DB", f"jsonl:///{tmp_path}/elsewhere")
    flow.run({}, run_id="r2")
    assert JSONLCheckpointer(tmp_path / "elsewhere").load_latest("r2").status == "completed"


def test_the_callers_data_is_never_mutated_by_in_place_reducers(cp) -> None:
    flow = Flow("chat", reducers={"messages": "append", "meta": "merge"})

    @flow.node
    def turn(ctx):
        return {"messages": {"role": "assistant", "n": len(ctx.data["messages"])},
                "meta": {"turns": len(ctx.data["messages"])}}

    flow.route("turn", lambda d: "turn" if len(d["messages"]) < 3 else END)
    history, meta = [{"role": "user"}], {"lang": "en"}
    state = flow.run({"messages": history, "meta": meta}, checkpointer=cp, run_id="r")
    assert history == [{"role": "user"}] and meta == {"lang": "en"}
    assert [m.get("n") for m in state.data["messages"]] == [None, 1, 2]
    assert cp.load_latest("r").data == state.data
    with pytest.raises(TypeError, match="data is a dict"):
        flow.run([1, 2], checkpointer=cp)  # type: ignore[arg-type]


def test_a_callable_reducer_returning_non_json_fails_the_run_cleanly(cp) -> None:
    flow = Flow("bad-reducer", reducers={"tags": lambda old, new: {*(old or []), new}})

    @flow.node
    def tag(ctx):
        return {"tags": "x"}

    flow.edge("tag", END)
    state = flow.run({"tags": ["a"]}, checkpointer=cp, run_id="r")
    assert state.status == "failed" and state.error["type"] == "SerializationError"
    assert "$.update[tag].tags" in state.error["message"]
    assert cp.load_latest("r").data == {"tags": ["a"]}


def test_a_flow_is_found_by_reference_once_its_module_holds_it(cp) -> None:
    """A run records where another process finds its flow (``module:attr``); a flow built
    in a function has no such place until a module names it."""
    import sys
    import types

    module = types.ModuleType("flows_for_ref_test")
    sys.modules[module.__name__] = module
    try:
        exec("from purpose_agent import Flow, END\n"
             "def build():\n"
             "    flow = Flow('built')\n"
             "    flow.add(lambda ctx: {'x': 1}, name='a')\n"
             "    flow.edge('a', END)\n"
             "    return flow\n", module.__dict__)
        flow = module.build()
        assert flow.run({}, checkpointer=cp, run_id="r1").flow_ref is None
        assert flow.ref is None, "searched again, still nowhere"
        module.named = flow
        assert flow.run({}, checkpointer=cp, run_id="r2").flow_ref == "flows_for_ref_test:named"
    finally:
        del sys.modules[module.__name__]


def test_an_object_whose_async_call_is_inherited_runs_as_async(tmp_path):
    """A node object of a subclass whose base defines ``async def __call__`` is awaited
    (it used to be called as if it were sync, its coroutine never run)."""
    from purpose_agent import END, Flow, SQLiteCheckpointer

    class Base:
        name = "asker"

        async def __call__(self, ctx):
            return {"ran": True}

    class Child(Base):
        pass

    flow = Flow("inherited-async")
    flow.add(Child())
    flow.edge("asker", END)
    state = flow.run({}, checkpointer=SQLiteCheckpointer(tmp_path / "runs.db"))
    assert state.status == "completed" and state.data == {"ran": True}
