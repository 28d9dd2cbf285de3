"""Budgets: the model call that would go over an agent's budget is not made; the run
pauses for a person, who raises the budget or stops; still enforced after a crash."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Child, result_of

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, Budget, Price, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, ScriptedModel, tool_call
from purpose_agent.runtime.usage import usage_totals


@tool
def lookup(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


def _script() -> list[Any]:
    usage = {"input_tokens": 10, "output_tokens": 5}
    return [{"tool_calls": [tool_call("lookup", order_id="A1")], "usage": usage},
            {"tool_calls": [tool_call("lookup", order_id="B2")], "usage": usage},
            {"content": "Both shipped.", "usage": usage}]


def _flow(model: Any, budget: Budget) -> Flow:
    flow = Flow("orders")
    flow.add(Agent("orders", model, "Help.", tools=[lookup], budget=budget))
    flow.edge("orders", END)
    return flow


@pytest.mark.parametrize(("budget", "reached"), [
    (Budget(max_model_calls=2), "2 of 2 model calls"),
    (Budget(max_tokens=20), "30 of 20 tokens"),
    (Budget(max_cost_usd=0.00002), "$0.00003 of $0.00002"),
], ids=["calls", "tokens", "cost"])
def test_the_call_over_budget_is_not_made_and_a_raised_budget_goes_on(
        tmp_path: Path, budget: Budget, reached: str) -> None:
    # $1 per million tokens in and out: each call (15 tokens) costs $0.000015.
    model = ScriptedModel(_script(), prices=Price(input_per_mtok=1.0, output_per_mtok=1.0))
    flow = _flow(model, budget)
    store = SQLiteCheckpointer(str(tmp_path / "runs.db"))
    paused = flow.run({"input": "A1 and B2?"}, checkpointer=store, run_id="b-1")

    assert paused.status.value == "paused"
    assert model.calls == 2  # the third call was not made
    assert paused.pending is not None
    payload = paused.pending["payload"]
    assert payload["budget_reached"] == reached
    assert payload["message"].startswith(f"budget reached: {reached}; resume with a higher "
                                         "budget or stop")
    assert payload["spent"]["model_calls"] == 2 and payload["spent"]["tokens"] == 30
    assert payload["budget"] == budget.to_dict()

    raised = {"max_model_calls": 3, "max_tokens": 100, "max_cost_usd": 1.0}
    state = flow.resume("b-1", checkpointer=store, answer={"budget": raised})
    assert state.status.value == "completed"
    assert state.data["orders"] == "Both shipped."
    assert model.calls == 3  # turns 1-2 replayed, only turn 3 asked
    totals = usage_totals(store.list_events("b-1"))
    assert totals is not None and totals["model_calls"] == 3


def test_stop_fails_the_node_and_an_unclear_answer_asks_again(tmp_path: Path) -> None:
    model = ScriptedModel(_script())
    flow = _flow(model, Budget(max_model_calls=1))
    store = SQLiteCheckpointer(str(tmp_path / "runs.db"))
    flow.run({"input": "?"}, checkpointer=store, run_id="b-2")

    again = flow.resume("b-2", checkpointer=store, answer={"budget": {"max_calls": 9}})
    assert again.status.value == "paused" and again.pending is not None
    assert "was not understood" in again.pending["payload"]["problem"]
    assert "max_model_calls" in again.pending["payload"]["problem"]

    stopped = flow.resume("b-2", checkpointer=store, answer={"stop": True})
    assert stopped.status.value == "failed"
    assert stopped.error is not None and stopped.error["type"] == "AgentError"
    assert "stopped at its budget (1 of 1 model calls)" in stopped.error["message"]
    assert model.calls == 1


def test_a_budget_in_dollars_needs_prices() -> None:
    with pytest.raises(ValueError, match="needs a model with prices"):
        Agent("a", ScriptedModel([]), budget=Budget(max_cost_usd=1.0))
    with pytest.raises(ValueError, match="max_tokens"):
        Budget(max_tokens=-1)


def test_the_budget_holds_after_a_crash_and_resume(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1")]},
               "Order A1 has shipped.")
    # One call allowed; the process dies after its response was committed.
    killed = child("run", "c-1", {"input": "A1?"}, flow="support_budget",
                   kill_at="before:lookup_order")
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    # A new process replays call 1 (counted from the journal), runs the tool, and stops
    # at the budget instead of sending call 2.
    paused = result_of(child("resume", "c-1", flow="support_budget"))
    assert paused["status"] == "paused"
    assert paused["pending"]["payload"]["budget_reached"] == "1 of 1 model calls"
    assert server.request_count == 1
    assert child.effects_lines() == ["lookup A1"]

    state = result_of(child("resume", "c-1", {"answer": {"budget": {"max_model_calls": 2}}},
                            flow="support_budget"))
    assert state["status"] == "completed"
    assert state["data"]["support"] == "Order A1 has shipped."
    assert server.request_count == 2
    assert child.effects_lines() == ["lookup A1"]
    totals = usage_totals(child.store().list_events("c-1"))
    assert totals is not None and totals["model_calls"] == 2
