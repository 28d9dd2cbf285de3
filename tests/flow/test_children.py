"""Child runs (``ctx.run_child``): started once per parent step (a journaled,
deterministic id), their data returned to the parent; a child that pauses parks the
parent until it has finished; cancelling a parent cancels its children; ``show`` names
both sides. On every store, sync and async."""

from __future__ import annotations

import asyncio

import pytest

from purpose_agent import (
    END,
    Flow,
    InMemoryCheckpointer,
    JSONLCheckpointer,
    RunFailed,
    SQLiteCheckpointer,
    open_checkpointer,
)
from purpose_agent.flow.children import children_of
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus


@pytest.fixture(params=["memory", "sqlite", "jsonl", "postgres"])
def cp(request, tmp_path):
    if request.param == "postgres":
        store = open_checkpointer(request.getfixturevalue("pg_url"))
    else:
        store = {"memory": InMemoryCheckpointer,
                 "sqlite": lambda: SQLiteCheckpointer(tmp_path / "runs.db"),
                 "jsonl": lambda: JSONLCheckpointer(tmp_path / "runs")}[request.param]()
    yield store
    store.close()


def make_flows(calls: list[str], *, ask: bool = False, fail: bool = False):
    child = Flow("child")

    @child.node
    def work(ctx):
        calls.append(ctx.data["n"])
        if fail:
            raise ValueError("the child broke")
        extra = ctx.interrupt("ok?") if ask else None
        return {"doubled": ctx.data["n"] * 2, "extra": extra}

    child.edge("work", END)
    parent = Flow("parent")

    @parent.node
    def spawn(ctx):
        first = ctx.run_child(child, {"n": 1})
        second = ctx.run_child(child, {"n": 2})
        return {"sum": first["doubled"] + second["doubled"]}

    parent.edge("spawn", END)
    return parent, child


def test_children_run_and_return_their_data(cp) -> None:
    calls: list[int] = []
    parent, _child = make_flows(calls)
    state = parent.run({}, checkpointer=cp, run_id="p")
    assert state.data == {"sum": 6} and calls == [1, 2]
    kids = sorted(children_of(cp, "p"))
    assert kids == ["p.c1-0", "p.c1-1"]
    assert cp.load_latest("p.c1-0").parent == {"run_id": "p", "step": 1,
                                                "key": "1/spawn/child/#0", "kind": "child"}
    assert len(cp.list_events("p", kinds=EventKind.CHILD_FINISHED)) == 2


def test_a_paused_child_parks_its_parent_until_it_has_finished(cp) -> None:
    calls: list[int] = []
    parent, child = make_flows(calls, ask=True)
    state = parent.run({}, checkpointer=cp, run_id="p")
    assert state.status is RunStatus.PAUSED
    assert state.pending == {"kind": "child", "run_id": "p.c1-0", "run_ids": ["p.c1-0"],
                             "node": "spawn"}
    assert parent.resume("p", checkpointer=cp).status is RunStatus.PAUSED  # still waits
    child.resume("p.c1-0", checkpointer=cp, answer="yes")
    state = parent.resume("p", checkpointer=cp)  # the first child is done: the second runs
    assert state.pending["run_id"] == "p.c1-1"
    child.resume("p.c1-1", checkpointer=cp, answer="yes")
    state = parent.resume("p", checkpointer=cp)
    assert state.data == {"sum": 6}
    assert calls == [1, 1, 2, 2]  # each child's node ran again after its answer, none twice
    assert sorted(children_of(cp, "p")) == ["p.c1-0", "p.c1-1"]  # no second child started


def test_a_failed_child_fails_the_parents_node(cp) -> None:
    parent, _child = make_flows([], fail=True)
    state = parent.run({}, checkpointer=cp, run_id="p")
    assert state.status is RunStatus.FAILED and state.error["type"] == RunFailed.__name__
    assert cp.load_latest("p.c1-0").status is RunStatus.FAILED


def test_cancelling_a_parent_cancels_its_children(cp) -> None:
    parent, _child = make_flows([], ask=True)
    parent.run({}, checkpointer=cp, run_id="p")
    parent.cancel("p", checkpointer=cp)
    assert cp.load_latest("p").status is RunStatus.CANCELLED
    assert cp.load_latest("p.c1-0").status is RunStatus.CANCELLED


def test_an_async_parent_awaits_its_child(cp) -> None:
    child = Flow("achild")

    @child.node
    async def work(ctx):
        return {"v": ctx.data["n"] + 1}

    child.edge("work", END)
    parent = Flow("aparent")

    @parent.node
    async def spawn(ctx):
        return {"got": (await ctx.run_child(child, {"n": 41}))["v"]}

    parent.edge("spawn", END)
    state = asyncio.run(parent.arun({}, checkpointer=cp, run_id="a"))
    assert state.data == {"got": 42}


def test_gather_runs_children_together_and_returns_in_order(cp) -> None:
    import threading

    barrier = threading.Barrier(3, timeout=20)
    child = Flow("peer")

    @child.node
    def work(ctx):
        barrier.wait()  # all three children are running at the same time
        return {"v": ctx.data["n"] * 10}

    child.edge("work", END)
    parent = Flow("gatherer")

    @parent.node
    def spawn(ctx):
        handles = [ctx.child(child, {"n": n}) for n in (3, 1, 2)]
        return {"vs": [r["v"] for r in ctx.gather(*handles)]}

    parent.edge("spawn", END)
    state = parent.run({}, checkpointer=cp, run_id="g")
    assert state.data == {"vs": [30, 10, 20]}
    assert sorted(children_of(cp, "g")) == ["g.c1-0", "g.c1-1", "g.c1-2"]


def test_a_gather_waits_for_every_child(cp) -> None:
    child = Flow("maybe-ask")

    @child.node
    def work(ctx):
        if ctx.data["ask"]:
            ctx.interrupt("ok?")
        return {"n": ctx.data["n"]}

    child.edge("work", END)
    parent = Flow("waits-all")

    @parent.node
    def spawn(ctx):
        got = ctx.gather(ctx.child(child, {"n": 1, "ask": False}),
                         ctx.child(child, {"n": 2, "ask": True}))
        return {"ns": [g["n"] for g in got]}

    parent.edge("spawn", END)
    state = parent.run({}, checkpointer=cp, run_id="w")
    assert state.pending == {"kind": "child", "run_id": "w.c1-1", "run_ids": ["w.c1-1"],
                             "node": "spawn"}
    child.resume("w.c1-1", checkpointer=cp, answer=True)
    assert parent.resume("w", checkpointer=cp).data == {"ns": [1, 2]}
    finished = cp.list_events("w", kinds=EventKind.CHILD_FINISHED)
    assert [e.payload["child"] for e in finished] == ["w.c1-0", "w.c1-1"]  # each once


def test_a_cancelled_child_fails_the_parents_wait_clearly(cp) -> None:
    parent, child = make_flows([], ask=True)
    parent.run({}, checkpointer=cp, run_id="p")
    child.cancel("p.c1-0", checkpointer=cp)
    state = parent.resume("p", checkpointer=cp)
    assert state.status is RunStatus.FAILED
    assert "child run 'p.c1-0' was cancelled" in state.error["message"]
