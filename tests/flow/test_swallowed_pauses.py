"""A pause (or an in-doubt step) that user code catches still pauses the run.

Once ``ctx.interrupt`` or an in-doubt step has raised its signal in a node execution, the
run pauses whatever the node does next: swallowing it (``except BaseException``, a bare
``except``, ``return`` in ``finally``, ``contextlib.suppress``, ``asyncio.gather(...,
return_exceptions=True)``) or wrapping it in an exception group (``asyncio.TaskGroup``).
Any other ``BaseException`` a node raises leaves the run resumable, never RUNNING with
its lease held.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from purpose_agent import END, Flow, JSONLCheckpointer, SQLiteCheckpointer, step
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.transcript import render_transcript


@pytest.fixture(params=["sqlite", "jsonl"])
def cp(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SQLiteCheckpointer(tmp_path / "runs.db")
    return JSONLCheckpointer(tmp_path / "runs")


# ── the ways user code swallows a signal ──────────────────────────────────────────
def broad_except(ask):
    try:
        return ask()
    except BaseException:
        return "swallowed"


def bare_except(ask):
    try:
        return ask()
    except:  # noqa: E722 - the point of the test
        return "swallowed"


def return_in_finally(ask):
    answer = "swallowed"
    try:
        answer = ask()
    finally:
        return answer  # noqa: B012 - the point of the test


def suppressed(ask):
    answer = "swallowed"
    with contextlib.suppress(BaseException):
        answer = ask()
    return answer


def converted(ask):
    try:
        return ask()
    except BaseException as exc:
        raise RuntimeError("the tool wrapper failed") from exc


def direct(ask):
    return ask()


SYNC_FORMS = {"except BaseException": broad_except, "bare except": bare_except,
              "return in finally": return_in_finally, "contextlib.suppress": suppressed,
              "converted to another error": converted, "direct": direct}


async def gathered(ask):
    async def one():
        return ask()

    results = await asyncio.gather(one(), return_exceptions=True)
    return results[0] if not isinstance(results[0], BaseException) else "swallowed"


async def async_form(form, ask):
    await asyncio.sleep(0)
    return form(ask)


def approval_flow(kind: str, form_name: str, effects: list[str]) -> Flow:
    """ask -> send. ``ask`` asks a person through the given swallowing form, then (if the
    node goes on) makes a durable step that must never run while the run is paused."""
    flow = Flow(f"swallow-{kind}")

    def after(answer):
        effects.append(f"after:{answer}")
        return answer

    if kind == "sync":
        @flow.node
        def ask(ctx):
            answer = SYNC_FORMS[form_name](lambda: ctx.interrupt({"q": "send?"}))
            ctx.step("after", after, answer)
            return {"approved": answer == "yes"}
    else:
        @flow.node
        async def ask(ctx):
            prompt = lambda: ctx.interrupt({"q": "send?"})  # noqa: E731
            if form_name == "asyncio.gather":
                answer = await gathered(prompt)
            else:
                answer = await async_form(SYNC_FORMS[form_name], prompt)
            ctx.step("after", after, answer)
            return {"approved": answer == "yes"}

    @flow.node
    def send(ctx):
        effects.append("send")
        return {"sent": True}

    flow.edge("ask", "send").edge("send", END)
    return flow


def assert_paused_by_caught_signal(cp, run_id: str, reason: str) -> None:
    state = cp.load_latest(run_id)
    assert state.status == "paused", state.status
    assert state.pending["kind"] == reason
    assert "approved" not in state.data and "sent" not in state.data
    info = cp.run_info(run_id)
    assert info.owner is None, "a paused run holds no lease"
    caught = cp.list_events(run_id, kinds=EventKind.NODE_SIGNAL_CAUGHT)
    assert len(caught) == 1 and caught[0].node == "ask"
    assert caught[0].payload["signal"] == reason
    shown = render_transcript(cp.list_events(run_id))
    assert f"ask's code caught its {reason.replace('_', '-')} pause" in shown


SWALLOWING = [name for name in SYNC_FORMS if name != "direct"]
ALL_FORMS = [("sync", name) for name in SWALLOWING] + [
    ("async", name) for name in SWALLOWING] + [("async", "asyncio.gather")]


@pytest.mark.parametrize(("kind", "form"), ALL_FORMS)
def test_a_swallowed_interrupt_still_pauses_and_its_return_is_discarded(cp, kind, form):
    effects: list[str] = []
    flow = approval_flow(kind, form, effects)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "paused"
    assert_paused_by_caught_signal(cp, "r", "interrupt")
    assert effects == [], "no durable step ran after the signal, the next node never ran"

    done = flow.resume("r", checkpointer=cp, answer="yes")
    assert done.status == "completed"
    assert done.data == {"approved": True, "sent": True}
    assert effects == ["after:yes", "send"]


# ── in doubt ─────────────────────────────────────────────────────────────────────
class Crash(BaseException):
    """Stands for the process dying inside the call (SIGKILL is tested in
    test_step_identity; here the point is what the node does with the in-doubt signal)."""


def in_doubt_flow(kind: str, form_name: str, effects: list[str]) -> Flow:
    flow = Flow(f"doubt-{kind}")

    @step(at_most_once=True)
    def charge(amount: int) -> str:
        effects.append(f"charge.{amount}")
        if len(effects) == 1:
            raise Crash
        return f"charged {amount}"

    if kind == "sync":
        @flow.node
        def ask(ctx):
            receipt = SYNC_FORMS[form_name](lambda: charge(5))
            return {"receipt": receipt}
    else:
        @flow.node
        async def ask(ctx):
            if form_name == "asyncio.gather":
                receipt = await gathered(lambda: charge(5))
            else:
                receipt = await async_form(SYNC_FORMS[form_name], lambda: charge(5))
            return {"receipt": receipt}

    flow.edge("ask", END)
    return flow


@pytest.mark.parametrize(("kind", "form"), ALL_FORMS)
def test_a_swallowed_in_doubt_step_still_pauses(cp, kind, form):
    effects: list[str] = []
    flow = in_doubt_flow(kind, form, effects)
    # The first run "dies" inside the charge. The swallowing forms would catch Crash
    # too, so the same flow without them makes that first call.
    with pytest.raises(Crash):
        in_doubt_flow(kind, "direct", effects).run({}, checkpointer=cp, run_id="r")
    assert effects == ["charge.5"]
    assert cp.run_info("r").owner is None, "the crash left no lease held"

    state = flow.resume("r", checkpointer=cp)
    assert state.status == "paused"
    assert_paused_by_caught_signal(cp, "r", "in_doubt")
    assert effects == ["charge.5"], "the at-most-once step never ran twice"
    done = flow.resume("r", checkpointer=cp, answer="charged 5 (checked by hand)")
    assert done.status == "completed" and done.data["receipt"] == "charged 5 (checked by hand)"
    assert effects == ["charge.5"]


# ── exception groups ──────────────────────────────────────────────────────────────
def test_an_interrupt_inside_a_task_group_pauses(cp):
    flow = Flow("taskgroup")
    effects: list[str] = []

    @flow.node
    async def ask(ctx):
        async def side():
            await asyncio.sleep(0)

        async def person():
            await asyncio.sleep(0)
            return ctx.interrupt({"q": "ok?"})

        async with asyncio.TaskGroup() as group:
            group.create_task(side())
            answer = group.create_task(person())
        effects.append("after")
        return {"answer": answer.result()}

    flow.edge("ask", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "paused" and state.pending["kind"] == "interrupt"
    assert cp.run_info("r").owner is None
    assert cp.list_events("r", kinds=EventKind.NODE_SIGNAL_CAUGHT) == [], \
        "a group carrying the signal out is not user code catching it"
    done = flow.resume("r", checkpointer=cp, answer=42)
    assert done.status == "completed" and done.data == {"answer": 42}
    assert effects == ["after"]


def test_an_in_doubt_step_inside_a_task_group_pauses(cp):
    effects: list[str] = []
    flow = Flow("taskgroup-doubt")

    @step(at_most_once=True)
    async def charge(amount: int) -> str:
        effects.append(f"charge.{amount}")
        if len(effects) == 1:
            raise Crash
        return f"charged {amount}"

    @flow.node
    async def pay(ctx):
        async with asyncio.TaskGroup() as group:
            receipt = group.create_task(charge(7))
        return {"receipt": receipt.result()}

    flow.edge("pay", END)
    with pytest.raises(BaseExceptionGroup):
        flow.run({}, checkpointer=cp, run_id="r")
    assert cp.run_info("r").owner is None and cp.run_info("r").status == "running"
    state = flow.resume("r", checkpointer=cp)
    assert state.status == "paused" and state.pending["kind"] == "in_doubt"
    assert effects == ["charge.7"]
    assert cp.run_info("r").owner is None


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_foreign_base_exception_leaves_the_run_resumable_not_leased(cp, raised, kind):
    """Not ours: it propagates, and the run is left as a crash would leave it, minus the
    wait for the lease: RUNNING at that node, no owner, its events journaled."""
    effects: list[str] = []
    executions: list[int] = []
    flow = Flow(f"foreign-{kind}")

    def body(ctx: Any) -> dict[str, Any]:
        ctx.step("before", effects.append, "before")
        executions.append(1)
        if len(executions) == 1:
            raise raised()
        return {"done": True}

    if kind == "sync":
        flow.add(body, name="work")
    else:
        async def work(ctx):
            return body(ctx)
        flow.add(work, name="work")
    flow.edge("work", END)
    with pytest.raises(raised):
        flow.run({}, checkpointer=cp, run_id="r")
    info = cp.run_info("r")
    assert info.status == "running" and info.owner is None
    stored = cp.load_latest("r")
    assert stored.current_node == "work" and stored.completed_nodes == []
    stopped = cp.list_events("r", kinds=EventKind.NODE_FAILED)
    assert stopped[-1].payload["error"] == raised.__name__
    done = flow.resume("r", checkpointer=cp)
    assert done.status == "completed" and effects == ["before"]
    seqs = [e.seq for e in cp.list_events("r")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_keyboard_interrupt_after_a_swallowed_pause_pauses_and_still_propagates(cp):
    flow = Flow("ctrl-c")

    @flow.node
    def ask(ctx):
        try:
            ctx.interrupt({"q": "ok?"})
        except BaseException:
            pass
        raise KeyboardInterrupt  # the operator pressed Ctrl-C meanwhile

    flow.edge("ask", END)
    with pytest.raises(KeyboardInterrupt):
        flow.run({}, checkpointer=cp, run_id="r")
    state = cp.load_latest("r")
    assert state.status == "paused" and state.pending["kind"] == "interrupt"
    assert cp.run_info("r").owner is None
    assert cp.list_events("r", kinds=EventKind.NODE_SIGNAL_CAUGHT)[0].payload["how"] == \
        "raised KeyboardInterrupt"
