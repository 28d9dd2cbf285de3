"""Durable timers, messages, retry policies and idempotency keys, in one process, on
every store, sync and async: what a run looks like while it waits, and how it goes on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from purpose_agent import (
    END,
    FlowDefinitionError,
    InMemoryCheckpointer,
    JSONLCheckpointer,
    RetryPolicy,
    RunStateError,
    SQLiteCheckpointer,
    WaitTimeout,
    open_checkpointer,
    step,
)
from purpose_agent.flow import Flow
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus


@pytest.fixture(params=["memory", "sqlite", "jsonl", "postgres"])
def cp(request, tmp_path):
    if request.param == "memory":
        store = InMemoryCheckpointer()
    elif request.param == "sqlite":
        store = SQLiteCheckpointer(tmp_path / "runs.db")
    elif request.param == "jsonl":
        store = JSONLCheckpointer(tmp_path / "runs")
    else:
        store = open_checkpointer(request.getfixturevalue("pg_url"))
    yield store
    store.close()


def sleepy_flow(inline_wait: float, seconds: float, effects: list[str]) -> Flow:
    flow = Flow("sleepy", inline_wait=inline_wait)

    @flow.node
    def nap(ctx):
        ctx.step("before", effects.append, "before")
        ctx.sleep(seconds)
        ctx.step("after", effects.append, "after")
        return {"done": True}

    flow.edge("nap", END)
    return flow


def test_a_short_sleep_is_waited_out_in_process(cp) -> None:
    effects: list[str] = []
    started = time.time()
    state = sleepy_flow(5.0, 0.3, effects).run({}, checkpointer=cp, run_id="s")
    assert state.status is RunStatus.COMPLETED
    assert time.time() - started >= 0.3
    assert effects == ["before", "after"]
    assert len(cp.list_events("s", kinds=EventKind.TIMER_SET)) == 1


def test_a_long_sleep_parks_the_run_until_resumed_after_its_time(cp) -> None:
    effects: list[str] = []
    flow = sleepy_flow(0.0, 4.0, effects)  # long enough to resume before its time
    state = flow.run({}, checkpointer=cp, run_id="s")
    assert state.status is RunStatus.PAUSED
    wake_at = state.pending["wake_at"]
    assert state.pending == {"kind": "sleep", "wake_at": wake_at, "node": "nap"}
    info = cp.run_info("s")
    assert info.owner is None  # holds no lease: no process is needed while it sleeps
    # Resumed before its time: it parks again, with the same journaled wake-up time.
    again = flow.resume("s", checkpointer=cp)
    assert again.status is RunStatus.PAUSED and again.pending["wake_at"] == wake_at
    time.sleep(max(0.0, wake_at - time.time()) + 0.01)  # its time passes
    done = flow.resume("s", checkpointer=cp)
    assert done.status is RunStatus.COMPLETED
    assert effects == ["before", "after"]  # "before" replayed from the journal
    assert len(cp.list_events("s", kinds=EventKind.TIMER_SET)) == 1


def test_sleep_until_takes_an_aware_datetime(cp) -> None:
    flow = Flow("until", inline_wait=0.0)

    @flow.node
    def wait(ctx):
        ctx.sleep_until(datetime.now(UTC) + timedelta(hours=1))
        return {}

    flow.edge("wait", END)
    state = flow.run({}, checkpointer=cp, run_id="u")
    assert state.pending["kind"] == "sleep"
    assert state.pending["wake_at"] == pytest.approx(time.time() + 3600, abs=60)
    bad = Flow("naive")

    @bad.node
    def naive(ctx):
        ctx.sleep_until(datetime.now())
        return {}

    bad.edge("naive", END)
    failed = bad.run({}, checkpointer=cp, run_id="n")
    assert failed.status is RunStatus.FAILED and "timezone-aware" in failed.error["message"]


def test_an_async_node_awaits_its_sleep(cp) -> None:
    flow = Flow("async-sleep", inline_wait=5.0)
    loop_ran: list[bool] = []

    @flow.node
    async def nap(ctx):
        async def tick():
            loop_ran.append(True)

        task = asyncio.ensure_future(tick())
        await ctx.sleep(0.2)  # the event loop goes on meanwhile
        await task
        return {"ok": True}

    flow.edge("nap", END)
    state = asyncio.run(flow.arun({}, checkpointer=cp, run_id="a"))
    assert state.status is RunStatus.COMPLETED and loop_ran == [True]


def waiting_flow(timeout: float | None = None) -> Flow:
    flow = Flow("waiting", inline_wait=0.0)

    @flow.node
    def listen(ctx):
        try:
            return {"got": ctx.wait_for("answer", timeout=timeout)}
        except WaitTimeout:
            return {"got": "timed out"}

    flow.edge("listen", END)
    return flow


def test_a_message_wakes_a_run_waiting_for_it(cp) -> None:
    flow = waiting_flow()
    state = flow.run({}, checkpointer=cp, run_id="w")
    assert state.status is RunStatus.PAUSED
    assert state.pending == {"kind": "message", "topic": "answer", "deadline": None,
                             "node": "listen"}
    assert flow.send("w", "answer", {"yes": 1}, checkpointer=cp) is True
    assert flow.get_state("w", checkpointer=cp).data == {"got": {"yes": 1}}


def test_messages_sent_before_the_wait_are_kept_and_duplicates_dropped(cp) -> None:
    flow = Flow("two", inline_wait=0.0)

    @flow.node
    def first(ctx):
        ctx.sleep(3600)  # parked: messages arrive meanwhile
        return {}

    @flow.node
    def second(ctx):
        return {"a": ctx.wait_for("t"), "b": ctx.wait_for("t")}

    flow.edge("first", "second").edge("second", END)
    flow.run({}, checkpointer=cp, run_id="m")
    assert flow.send("m", "t", 1, checkpointer=cp, dedup_key="x")
    assert not flow.send("m", "t", 99, checkpointer=cp, dedup_key="x")
    assert flow.send("m", "t", 2, checkpointer=cp)
    assert flow.get_state("m", checkpointer=cp).pending["kind"] == "sleep"  # not woken
    # Its node sleeps another hour: move its timer to the past to let it go on now.
    cp.commit("m", _wake_now(cp, "m"))
    state = flow.resume("m", checkpointer=cp)
    assert state.status is RunStatus.COMPLETED
    assert state.data == {"a": 1, "b": 2}


def _wake_now(cp, run_id):
    from purpose_agent.runtime.journal import Commit

    rec = next(r for r in cp.load_steps(run_id, 1) if r.kind == "sleep")
    rec.result = {"wake_at": time.time() - 1}
    return Commit(steps=[rec])


def test_a_wait_with_a_deadline_times_out_at_the_journaled_deadline(cp) -> None:
    flow = waiting_flow(timeout=0.3)
    state = flow.run({}, checkpointer=cp, run_id="d")
    deadline = state.pending["deadline"]
    time.sleep(max(0.0, deadline - time.time()) + 0.01)
    done = flow.resume("d", checkpointer=cp)
    assert done.data == {"got": "timed out"}
    assert len(cp.list_events("d", kinds=EventKind.MESSAGE_TIMEOUT)) == 1


def test_a_short_deadline_is_waited_out_in_process(cp) -> None:
    flow = waiting_flow(timeout=0.3)
    flow.inline_wait = 5.0
    state = flow.run({}, checkpointer=cp, run_id="d")
    assert state.data == {"got": "timed out"}


def test_send_refuses_an_ended_or_unknown_run(cp) -> None:
    flow = waiting_flow()
    with pytest.raises(Exception, match="no run"):
        flow.send("nope", "answer", 1, checkpointer=cp)
    flow.run({}, checkpointer=cp, run_id="w")
    flow.send("w", "answer", 1, checkpointer=cp)
    with pytest.raises(RunStateError, match="completed"):
        flow.send("w", "answer", 2, checkpointer=cp)


def test_a_resume_with_an_answer_is_refused_for_a_parked_run(cp) -> None:
    flow = waiting_flow()
    flow.run({}, checkpointer=cp, run_id="w")
    with pytest.raises(RunStateError, match="message on topic 'answer'"):
        flow.resume("w", checkpointer=cp, answer="yes")


# ── retry policies ────────────────────────────────────────────────────────────────


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("429")
        self.retry_after = retry_after


def test_a_step_policy_retries_with_backoff_and_honours_retry_after(cp) -> None:
    calls: list[float] = []

    @step(retry=RetryPolicy(max_attempts=3, initial=0.05, backoff=2.0, max_interval=1.0))
    def call_api() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RateLimited(0.4)
        if len(calls) == 2:
            raise ConnectionError("reset")
        return "ok"

    flow = Flow("api", inline_wait=5.0)

    @flow.node
    def use(ctx):
        return {"r": call_api()}

    flow.edge("use", END)
    state = flow.run({}, checkpointer=cp, run_id="p")
    assert state.data == {"r": "ok"}
    assert calls[1] - calls[0] >= 0.4  # the server's Retry-After, not the 0.05 s backoff
    assert calls[2] - calls[1] >= 0.1  # initial x backoff for attempt 2
    failed = cp.list_events("p", kinds=EventKind.STEP_FAILED)
    assert [(e.payload["attempt"], e.payload["retry_in"]) for e in failed] == [
        (1, 0.4), (2, 0.1)]


def test_a_non_retryable_error_fails_at_once(cp) -> None:
    calls: list[int] = []
    flow = Flow("strict")

    @flow.node(retry=RetryPolicy(max_attempts=5, initial=0.0, non_retryable=(KeyError,)))
    def work(ctx):
        calls.append(1)
        raise KeyError("bad input")

    flow.edge("work", END)
    state = flow.run({}, checkpointer=cp, run_id="k")
    assert state.status is RunStatus.FAILED and calls == [1]


def test_a_long_node_backoff_parks_the_run_and_keeps_its_attempt_count(cp) -> None:
    attempts: list[int] = []
    flow = Flow("slow-retry", inline_wait=0.0)

    @flow.node(retry=RetryPolicy(max_attempts=3, initial=0.2))
    def work(ctx):
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("down")
        return {"attempt": ctx.attempt}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=cp, run_id="b")
    assert state.status is RunStatus.PAUSED
    assert state.pending["reason"] == "retry"
    while state.status is RunStatus.PAUSED:
        time.sleep(max(0.0, state.pending["wake_at"] - time.time()) + 0.01)
        state = flow.resume("b", checkpointer=cp)
    assert state.data == {"attempt": 3} and attempts == [1, 2, 3]


def test_a_failed_run_resumed_starts_its_node_at_attempt_one_again(cp) -> None:
    attempts: list[int] = []
    flow = Flow("fails")

    @flow.node(retry=RetryPolicy(max_attempts=2, initial=0.0))
    def work(ctx):
        attempts.append(ctx.attempt)
        if len(attempts) < 4:
            raise ConnectionError("down")
        return {}

    flow.edge("work", END)
    assert flow.run({}, checkpointer=cp, run_id="f").status is RunStatus.FAILED
    assert flow.resume("f", checkpointer=cp).status is RunStatus.COMPLETED
    assert attempts == [1, 2, 1, 2]


def test_bad_retry_policies_are_refused() -> None:
    with pytest.raises(FlowDefinitionError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(FlowDefinitionError, match="non_retryable"):
        RetryPolicy(non_retryable=(ValueError, "x"))  # type: ignore[arg-type]


# ── idempotency keys ──────────────────────────────────────────────────────────────


def test_an_idempotency_key_names_the_step_and_is_refused_outside_one(cp) -> None:
    flow = Flow("keys")

    @flow.node
    def work(ctx):
        first = ctx.step("charge", ctx.idempotency_key)
        second = ctx.step("charge", ctx.idempotency_key)
        try:
            ctx.idempotency_key()
        except FlowDefinitionError:
            outside = "refused"
        return {"keys": [first, second], "outside": outside}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=cp, run_id="i")
    first, second = state.data["keys"]
    assert first.startswith("i:") and first != second  # two calls: two steps, two keys
    assert state.data["outside"] == "refused"


def test_an_async_node_awaits_its_messages(cp) -> None:
    flow = Flow("async-wait", inline_wait=0.0)

    @flow.node
    async def listen(ctx):
        first = await ctx.wait_for("t")
        try:
            await ctx.wait_for("never", timeout=0.0)
        except WaitTimeout:
            return {"got": first, "late": "timed out"}
        return {}

    flow.edge("listen", END)
    state = asyncio.run(flow.arun({}, checkpointer=cp, run_id="aw"))
    assert state.pending["topic"] == "t"
    cp.send_message("aw", "t", {"n": 1})  # stored only: resumed below, asynchronously
    state = asyncio.run(flow.aresume("aw", checkpointer=cp))
    assert state.data == {"got": {"n": 1}, "late": "timed out"}
