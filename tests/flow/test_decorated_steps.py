"""A ``@step``-decorated function handed to ``ctx.step`` is ONE durable step: the name
given to ``ctx.step`` and the decorator's options (at_most_once, retries), one journal
record, one pair of step events, and a replay that calls nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from purpose_agent import END, Flow, SQLiteCheckpointer, step
from purpose_agent.runtime.events import EventKind

calls: list[str] = []


@step(at_most_once=True)
def charge(order: str) -> str:
    calls.append(f"charge {order}")
    return f"charged {order}"


@step(retries=2, backoff=0.0)
async def fetch(url: str) -> str:
    calls.append(f"fetch {url}")
    return f"page of {url}"


def _flow() -> Flow:
    flow = Flow("decorated")

    @flow.node
    def pay(ctx):
        receipt = ctx.step("pay", charge, "A-1")
        approved = ctx.interrupt({"receipt": receipt})
        return {"receipt": receipt, "approved": approved}

    flow.edge("pay", END)
    return flow


def _step_kinds(cp: SQLiteCheckpointer, run_id: str) -> list[tuple[str, str]]:
    return [(str(e.kind), e.payload["step"]) for e in cp.list_events(run_id)
            if e.kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED)]


def test_a_decorated_function_given_to_ctx_step_is_one_step(tmp_path: Path) -> None:
    calls.clear()
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = _flow()
    paused = flow.run({}, checkpointer=cp, run_id="r1")
    assert paused.status == "paused"
    assert calls == ["charge A-1"]
    records = cp.load_steps("r1", 1)
    steps = [r for r in records if r.kind == "step"]
    assert [(r.name, r.status, r.at_most_once) for r in steps] == [("pay", "done", True)]
    assert _step_kinds(cp, "r1") == [("step.started", "pay"), ("step.completed", "pay")]

    # Another process-free resume: the node re-executes, the step replays, nothing runs.
    cp2 = SQLiteCheckpointer(tmp_path / "runs.db")
    done = _flow().resume("r1", checkpointer=cp2, answer="yes")
    assert done.status == "completed"
    assert done.data == {"receipt": "charged A-1", "approved": "yes"}
    assert calls == ["charge A-1"]
    assert [(r.name, r.status) for r in cp2.load_steps("r1", 1) if r.kind == "step"] == [
        ("pay", "done")]
    assert _step_kinds(cp2, "r1") == [("step.started", "pay"), ("step.completed", "pay")]


def test_a_decorated_async_function_given_to_ctx_step_is_one_step(tmp_path: Path) -> None:
    calls.clear()
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = Flow("decorated-async")

    @flow.node
    async def read(ctx):
        return {"page": await ctx.step("read", fetch, "https://example.org")}

    flow.edge("read", END)
    state = asyncio.run(flow.arun({}, checkpointer=cp, run_id="a1"))
    assert state.status == "completed" and state.data["page"] == "page of https://example.org"
    assert calls == ["fetch https://example.org"]
    assert [r.name for r in cp.load_steps("a1", 1)] == ["read"]
    assert _step_kinds(cp, "a1") == [("step.started", "read"), ("step.completed", "read")]


def test_a_decorated_function_called_directly_is_one_step_named_after_it(tmp_path: Path) -> None:
    calls.clear()
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = Flow("direct")

    @flow.node
    def pay(ctx):
        return {"receipt": charge("B-2")}

    flow.edge("pay", END)
    assert flow.run({}, checkpointer=cp, run_id="d1").status == "completed"
    recs = cp.load_steps("d1", 1)
    assert [(r.name, r.at_most_once) for r in recs] == [("charge", True)]


class Shop:
    def __init__(self) -> None:
        self.sent: list[str] = []

    @step(at_most_once=True)
    def send(self, text: str) -> str:
        self.sent.append(text)
        return f"sent {text}"


def test_a_decorated_method_given_to_ctx_step_is_one_step_bound_to_its_object(
        tmp_path: Path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    shop = Shop()
    flow = Flow("method")

    @flow.node
    def mail(ctx):
        return {"out": ctx.step("mail", shop.send, "hi")}

    flow.edge("mail", END)
    assert flow.run({}, checkpointer=cp, run_id="m1").data == {"out": "sent hi"}
    assert shop.sent == ["hi"]
    assert [(r.name, r.at_most_once) for r in cp.load_steps("m1", 1)] == [("mail", True)]
