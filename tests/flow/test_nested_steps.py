"""A durable step called inside another step's function (a ``@step`` helper, an explicit
``ctx.step``) is a plain call: the outer call is the step. Were the inner call a step of
its own, it would take a place in the node execution on the first run and none on the
replay (the outer step's recorded result is returned without calling its function), so
every later place would shift: a re-executed node would find another step at its place
(FlowChangedError) or be handed another step's result."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from purpose_agent import END, Flow, RetryPolicy, SQLiteCheckpointer, step

calls: list[str] = []


@step
def lookup(key: str) -> str:
    calls.append(f"lookup {key}")
    return f"value of {key}"


@step
async def alookup(key: str) -> str:
    calls.append(f"alookup {key}")
    return f"value of {key}"


def _places(cp: SQLiteCheckpointer, run_id: str) -> list[tuple[int, str, str]]:
    return [(r.index, r.kind, r.name) for r in cp.load_steps(run_id, 1)]


@pytest.mark.parametrize("inner", ["decorated", "explicit"])
def test_a_step_inside_a_step_is_a_plain_call_and_replays_with_it(
        tmp_path: Path, inner: str) -> None:
    calls.clear()
    flow = Flow("nested")

    @flow.node
    def work(ctx):
        def outer() -> str:
            got = lookup("a") if inner == "decorated" else ctx.step("lookup", lookup, "a")
            return f"outer saw {got}"

        first = ctx.step("outer", outer)
        answer = ctx.interrupt({"first": first})
        return {"first": first, "answer": answer, "after": ctx.step("after", str.upper, "x")}

    flow.edge("work", END)
    db = tmp_path / "runs.db"
    assert flow.run({}, checkpointer=SQLiteCheckpointer(db), run_id="n1").status == "paused"
    cp = SQLiteCheckpointer(db)
    state = flow.resume("n1", checkpointer=cp, answer="yes")
    assert state.status == "completed", state.error
    assert state.data == {"first": "outer saw value of a", "answer": "yes", "after": "X"}
    assert calls == ["lookup a"]  # the outer step replayed: nothing inside it ran again
    assert _places(cp, "n1") == [(0, "step", "outer"), (1, "interrupt", "interrupt"),
                                 (2, "step", "after")]


def test_an_async_step_inside_an_async_step_is_a_plain_call(tmp_path: Path) -> None:
    calls.clear()
    flow = Flow("anested")

    @flow.node
    async def work(ctx):
        async def outer() -> str:
            return f"outer saw {await alookup('b')}"

        first = await ctx.step("outer", outer)
        answer = ctx.interrupt(first)
        return {"first": first, "answer": answer}

    flow.edge("work", END)
    db = tmp_path / "runs.db"
    paused = asyncio.run(flow.arun({}, checkpointer=SQLiteCheckpointer(db), run_id="a1"))
    assert paused.status == "paused"
    cp = SQLiteCheckpointer(db)
    state = asyncio.run(flow.aresume("a1", checkpointer=cp, answer="ok"))
    assert state.status == "completed", state.error
    assert state.data == {"first": "outer saw value of b", "answer": "ok"}
    assert calls == ["alookup b"]
    assert _places(cp, "a1") == [(0, "step", "outer"), (1, "interrupt", "interrupt")]


@pytest.mark.parametrize("inner", ["interrupt", "sleep", "wait_for", "map"])
def test_a_place_taking_call_inside_a_step_is_refused_naming_it(tmp_path: Path,
                                                                inner: str) -> None:
    """An interrupt, a timer, a message wait or a fan-out takes a place in the node
    execution: inside a step's function it would take one on the first run and none when
    the step replays. It is refused with an error saying where to call it instead."""
    ran: list[str] = []
    flow = Flow("nested-place")

    @flow.node
    def work(ctx):
        def outer() -> str:
            ran.append("outer")
            {"interrupt": lambda: ctx.interrupt("ok?"), "sleep": lambda: ctx.sleep(0),
             "wait_for": lambda: ctx.wait_for("topic", timeout=0),
             "map": lambda: ctx.map(str, [1])}[inner]()
            return "unreachable"

        return {"out": ctx.step("outer", outer)}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=SQLiteCheckpointer(tmp_path / "runs.db"), run_id="p1")
    assert state.status == "failed"
    assert state.error["type"] == "FlowDefinitionError"
    assert f"ctx.{inner}" in state.error["message"]
    assert "inside the function of step 'outer'" in state.error["message"]
    assert ran == ["outer"]


def test_a_refused_call_inside_a_retried_step_is_not_retried(tmp_path: Path) -> None:
    """The refusal is a mistake in the flow: a step with a retry policy fails at once
    instead of calling its function again to meet the same refusal."""
    ran: list[str] = []
    flow = Flow("nested-refusal-retry")

    @step(retry=RetryPolicy(max_attempts=4, initial=0.0))
    def outer(ctx) -> str:
        ran.append("outer")
        ctx.sleep(0)
        return "unreachable"

    @flow.node(retry=RetryPolicy(max_attempts=3, initial=0.0))
    def work(ctx):
        return {"out": outer(ctx)}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=SQLiteCheckpointer(tmp_path / "runs.db"), run_id="r1")
    assert state.status == "failed"
    assert state.error["type"] == "FlowDefinitionError"
    assert ran == ["outer"]
