"""A step is its node execution and its place in it (name + call index), never its
arguments: a step re-executed with other arguments (a timestamp, a fresh uuid) replays
its recorded result, or pauses in doubt, and the change is reported as an event."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from crash_harness import Child, result_of

from purpose_agent import END, Flow, FlowChangedError, JSONLCheckpointer, SQLiteCheckpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.transcript import render_transcript


def test_at_most_once_step_killed_inside_with_fresh_arguments_pauses_in_doubt(child: Child):
    killed = child("run", "noted", "p1", crash="pay_noted:amo")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert child.effects_lines() == ["charge.A-17"]

    out = result_of(child("resume", "noted", "p1"))
    assert out["status"] == "paused", "the charge must not run again on its own"
    assert out["pending"]["kind"] == "in_doubt"
    assert out["pending"]["name"] == "charge_noted"
    assert child.effects_lines() == ["charge.A-17"]
    cp = child.store()
    changed = cp.list_events("p1", kinds=EventKind.STEP_ARGS_CHANGED)
    assert [(e.node, e.payload["step"], e.payload["status"]) for e in changed] == [
        ("pay_noted", "charge_noted", "in_doubt")]
    assert changed[0].payload["recorded"] != changed[0].payload["now"]
    assert "↺ charge_noted is in doubt, called now with other arguments (\"A-17\", \"at " in \
        render_transcript(cp.list_events("p1"))

    done = result_of(child("resume", "noted", "p1", {"answer": "charged A-17 (by hand)"}))
    assert done["status"] == "completed"
    assert done["data"]["receipt"] == "charged A-17 (by hand)"
    assert child.effects_lines() == ["charge.A-17", "log", "log2"]


def test_completed_plain_step_with_fresh_arguments_replays_after_a_kill(child: Child):
    killed = child("run", "noted", "p1", crash="log_noted:between")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert child.effects_lines() == ["charge.A-17", "log"]

    done = result_of(child("resume", "noted", "p1"))
    assert done["status"] == "completed"
    assert done["data"]["logged"] == ["LOG", "LOG2"]
    assert child.effects_lines() == ["charge.A-17", "log", "log2"], "no effect ran twice"
    changed = child.store().list_events("p1", kinds=EventKind.STEP_ARGS_CHANGED)
    assert [(e.node, e.payload["step"], e.payload["status"]) for e in changed] == [
        ("log_noted", "log", "replayed")]


@pytest.fixture(params=["sqlite", "jsonl"])
def cp(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        return SQLiteCheckpointer(tmp_path / "runs.db")
    return JSONLCheckpointer(tmp_path / "runs")


def test_a_retried_node_replays_its_step_whatever_the_arguments_are_now(cp):
    calls: list[str] = []
    flow = Flow("retry-args")

    def send(token: str) -> str:
        calls.append(token)
        return f"sent {token}"

    @flow.node(retries=1, backoff=0.0)
    def work(ctx):
        first = ctx.step("send", send, str(uuid.uuid4()))
        if ctx.attempt == 1:
            raise ValueError("flaky after the send")
        return {"first": first}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "completed"
    assert len(calls) == 1 and state.data["first"] == f"sent {calls[0]}"
    changed = cp.list_events("r", kinds=EventKind.STEP_ARGS_CHANGED)
    assert [(e.payload["step"], e.payload["index"], e.payload["status"]) for e in changed] == [
        ("send", 0, "replayed")]
    recorded = cp.load_steps("r", 1)
    assert recorded[0].args_digest == changed[0].payload["recorded"]


def test_same_arguments_replay_without_a_report(cp):
    calls: list[int] = []
    flow = Flow("retry-same")

    @flow.node(retries=1, backoff=0.0)
    def work(ctx):
        ctx.step("send", calls.append, 1)
        ctx.step("send", calls.append, 1)  # the same call twice is two steps
        if ctx.attempt == 1:
            raise ValueError("flaky")
        return {}

    flow.edge("work", END)
    assert flow.run({}, checkpointer=cp, run_id="r").status == "completed"
    assert calls == [1, 1]
    assert cp.list_events("r", kinds=EventKind.STEP_ARGS_CHANGED) == []


def test_another_step_at_a_recorded_place_is_a_changed_flow(cp):
    flow = Flow("changed")
    names = iter(["charge", "refund"])

    @flow.node(retries=1, backoff=0.0)
    def work(ctx):
        ctx.step(next(names), str, 1)
        if ctx.attempt == 1:
            raise ValueError("flaky")
        return {}

    flow.edge("work", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.status == "failed"
    assert state.error["type"] == FlowChangedError.__name__
    assert "'charge'" in state.error["message"] and "'refund'" in state.error["message"]
