"""An approval-gated tool pauses the run in one process; a person's answer resumes it in
another: approve, approve with edited arguments, or reject (the model is told)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_helpers import Child, kinds, result_of

from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call


def _pause(child: Child, server: OpenAICompatibleTestServer, run_id: str) -> dict[str, Any]:
    server.add({"tool_calls": [tool_call("refund", order_id="A1", amount=30)]}, "Done.")
    paused = result_of(child("run", run_id, {"input": "Refund order A1, it arrived broken."}))
    assert paused["status"] == "paused"
    assert child.effects_lines() == []
    assert server.request_count == 1
    return paused


@pytest.mark.parametrize(("answer", "effects"), [
    ({"approve": True}, ["refund A1 30.0"]),
    ({"approve": True, "args": {"order_id": "A1", "amount": 10}}, ["refund A1 10.0"]),
], ids=["approve", "edit-args"])
def test_approved_call_runs_once_in_the_resuming_process(
        child: Child, server: OpenAICompatibleTestServer, answer: Any,
        effects: list[str]) -> None:
    paused = _pause(child, server, "r-1")
    payload = paused["pending"]["payload"]
    assert payload["tool"] == "refund"
    assert payload["args"] == {"order_id": "A1", "amount": 30}

    state = result_of(child("resume", "r-1", {"answer": answer}))
    assert state["status"] == "completed"
    assert state["data"]["support"] == "Done."
    assert child.effects_lines() == effects
    assert server.request_count == 2  # turn 1 was replayed, not re-sent
    amount = effects[0].split()[-1]
    assert server.requests[1]["messages"][-1]["content"] == f"refunded {amount} on A1"
    assert kinds(child.store(), "r-1", "hitl.request")[0]["payload"]["tool"] == "refund"


def test_rejected_call_never_runs_and_the_model_reads_why(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    _pause(child, server, "r-2")
    answer = {"approve": False, "reason": "over the refund limit"}
    state = result_of(child("resume", "r-2", {"answer": answer}))
    assert state["status"] == "completed"
    assert child.effects_lines() == []
    tool_message = server.requests[1]["messages"][-1]
    assert tool_message["role"] == "tool"
    assert json.loads(tool_message["content"]) == {"rejected": True,
                                                   "reason": "over the refund limit"}
