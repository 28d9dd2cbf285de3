"""A failed run keeps why it failed: the last attempt's traceback (redacted, size-capped)
in ``state.error`` and the ``run.error`` event, failures reach the ``logging`` module, and
``state.raise_for_status()`` turns a FAILED state into a ``RunFailed``."""

from __future__ import annotations

import logging
import pickle

import pytest

from purpose_agent import (
    END,
    Flow,
    InMemoryCheckpointer,
    JSONLCheckpointer,
    RunFailed,
    RunStateError,
    SQLiteCheckpointer,
)
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.redact import TRACEBACK_LIMIT

SECRET = "sk-live0123456789abcdef"


@pytest.fixture(params=["memory", "sqlite", "jsonl"])
def cp(request, tmp_path):
    if request.param == "memory":
        return InMemoryCheckpointer()
    if request.param == "sqlite":
        return SQLiteCheckpointer(tmp_path / "runs.db")
    return JSONLCheckpointer(tmp_path / "runs")


def parse_invoice(text: str) -> float:
    raise ValueError(f"cannot parse {text!r} (key {SECRET})")


def failing_flow() -> Flow:
    flow = Flow("invoices")

    @flow.node(retries=1, backoff=0.0)
    def parse(ctx):
        try:
            return {"total": parse_invoice(ctx.data["text"])}
        except ValueError as exc:
            raise RuntimeError("the invoice step gave up") from exc

    flow.edge("parse", END)
    return flow


def test_the_last_attempts_traceback_is_kept_redacted_in_state_and_event(cp) -> None:
    state = failing_flow().run({"text": "12,5 EUR"}, checkpointer=cp, run_id="inv-1")
    assert state.status == "failed"
    for error in (state.error, cp.load_latest("inv-1").error,
                  cp.list_events("inv-1", kinds=[EventKind.RUN_ERROR])[0].payload):
        tb = error["traceback"]
        assert tb.startswith("Traceback (most recent call last):")
        first_frame = tb.splitlines()[1]
        assert "test_failures.py" in first_frame and "in parse" in first_frame, \
            "the traceback starts at the node, not inside the engine"
        assert "in parse_invoice" in tb and "ValueError: cannot parse '12,5 EUR'" in tb
        assert "direct cause of the following exception" in tb
        assert tb.rstrip().endswith("RuntimeError: the invoice step gave up")
        assert SECRET not in tb and "[redacted]" in tb
        assert (error["type"], error["node"], error["attempt"]) == ("RuntimeError", "parse", 2)


def test_a_huge_traceback_is_cut_in_the_middle_keeping_its_end(cp) -> None:
    flow = Flow("deep")

    def ping(n: int) -> None:
        if n == 0:
            raise KeyError("bottom")
        pong(n - 1)

    def pong(n: int) -> None:  # alternating frames: Python cannot fold them into one line
        ping(n)

    @flow.node
    def dive(ctx):
        ping(200)

    flow.edge("dive", END)
    state = flow.run({}, checkpointer=cp, run_id="deep-1")
    tb = state.error["traceback"]
    assert len(tb) <= TRACEBACK_LIMIT
    assert tb.startswith("Traceback") and tb.rstrip().endswith("KeyError: 'bottom'")
    assert "characters cut" in tb


def test_failures_are_logged_once_per_attempt_and_once_per_failed_run(cp, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="purpose_agent")
    failing_flow().run({"text": "x"}, checkpointer=cp, run_id="inv-2")
    records = [r for r in caplog.records if r.name == "purpose_agent"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR]
    retry, failure = records
    assert "inv-2" in retry.getMessage() and "attempt 1 of 2" in retry.getMessage()
    assert "run inv-2 failed in node parse (attempt 2)" in failure.getMessage()
    assert failure.exc_info is not None and failure.exc_info[0] is RuntimeError
    assert SECRET not in retry.getMessage() + failure.getMessage()


def test_raise_for_status_raises_run_failed_for_a_failed_run(cp) -> None:
    state = failing_flow().run({"text": "x"}, checkpointer=cp, run_id="inv-3")
    with pytest.raises(RunFailed) as caught:
        state.raise_for_status()
    err = caught.value
    assert isinstance(err, RunStateError)
    assert (err.run_id, err.node, err.error_type) == ("inv-3", "parse", "RuntimeError")
    assert err.error_message == "the invoice step gave up"
    assert err.error_traceback == state.error["traceback"]
    assert "run 'inv-3' failed in node parse" in str(err) and "parse_invoice" in str(err)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.run_id, copy.node, str(copy)) == (err.run_id, err.node, str(err))
    with pytest.raises(RunFailed):
        cp.load_latest("inv-3").raise_for_status()


def test_raise_for_status_returns_the_state_otherwise(cp) -> None:
    flow = Flow("ok")
    flow.add(lambda ctx: {"done": True}, name="only")
    flow.edge("only", END)
    state = flow.run({}, checkpointer=cp, run_id="ok-1").raise_for_status()
    assert state.status == "completed" and state.data == {"done": True}
    asks = Flow("asks")
    asks.add(lambda ctx: {"answer": ctx.interrupt("ok?")}, name="ask")
    asks.edge("ask", END)
    paused = asks.run({}, checkpointer=cp, run_id="ask-1")
    assert paused.raise_for_status() is paused and paused.status == "paused"
