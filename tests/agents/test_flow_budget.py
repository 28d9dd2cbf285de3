"""A flow's budget (``Flow(budget=...)``) counts every model call of a run, over all its
agents and nodes, from the journal: enforced after a resume in a fresh flow and store
handle, and in a new process after a SIGKILL at the budget check itself; a person's
raise holds for the run's later nodes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import API_KEY, HERE, Child, kinds, result_of

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, Budget, OpenAIModel, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call
from purpose_agent.errors import FlowDefinitionError
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.usage import usage_totals

SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))


@tool
def lookup(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


def _flow(server: OpenAICompatibleTestServer, budget: Budget) -> Flow:
    """Three agents in a row: triage (1 call), orders (2 calls), reply (1 call)."""
    model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, max_retries=0)
    flow = Flow("budgeted", budget=budget)
    flow.add(Agent("triage", model, "Classify.", input_key="input"))
    flow.add(Agent("orders", model, "Look up.", tools=[lookup], input_key="input",
                   messages_key="order_messages"))
    flow.add(Agent("reply", model, "Reply.", input_key="orders",
                   messages_key="reply_messages"))
    flow.edge("triage", "orders").edge("orders", "reply").edge("reply", END)
    return flow


def test_a_flow_budget_counts_the_whole_run_and_holds_after_resume(
        server: OpenAICompatibleTestServer, store: BaseCheckpointer) -> None:
    server.add("shipping", {"tool_calls": [tool_call("lookup", order_id="A1")]},
               "A1 has shipped.", "Dear customer, A1 has shipped.")
    state = _flow(server, Budget(max_model_calls=2)).run(
        {"input": "Where is A1?"}, checkpointer=store, run_id="fb-1")

    # triage made call 1, orders call 2; the third (orders' second) was not made.
    assert state.status.value == "paused"
    assert server.request_count == 2
    assert state.pending is not None
    payload = state.pending["payload"]
    assert payload["scope"] == "flow" and payload["agent"] == "orders"
    assert payload["budget_reached"] == "2 of 2 model calls"
    assert payload["message"].startswith("flow budget reached: 2 of 2 model calls")
    assert payload["spent"]["model_calls"] == 2

    # Resumed as a new process would: a fresh flow (its budget back at 2), the count
    # from the journal. The raise to 3 lets orders finish and holds for the next node.
    again = _flow(server, Budget(max_model_calls=2)).resume(
        "fb-1", checkpointer=store, answer={"budget": {"max_model_calls": 3}})
    assert again.status.value == "paused"
    assert server.request_count == 3  # orders' second call; reply's would be the fourth
    assert again.pending is not None
    payload = again.pending["payload"]
    assert (payload["agent"], payload["budget_reached"]) == ("reply", "3 of 3 model calls")
    assert payload["budget"]["max_model_calls"] == 3
    assert again.data["orders"] == "A1 has shipped."

    done = _flow(server, Budget(max_model_calls=2)).resume(
        "fb-1", checkpointer=store, answer={"budget": {"max_model_calls": None}})
    assert done.status.value == "completed", done.error
    assert done.data["reply"] == "Dear customer, A1 has shipped."
    assert server.request_count == 4  # no call was ever made twice


def test_stopping_at_the_flow_budget_fails_the_run(
        server: OpenAICompatibleTestServer, store: BaseCheckpointer) -> None:
    server.add("shipping")
    flow = _flow(server, Budget(max_model_calls=1))
    assert flow.run({"input": "?"}, checkpointer=store, run_id="fb-2").status.value == "paused"
    failed = flow.resume("fb-2", checkpointer=store, answer={"stop": True})
    assert failed.status.value == "failed" and failed.error is not None
    assert "stopped at its flow budget (1 of 1 model calls)" in failed.error["message"]
    assert server.request_count == 1


def test_a_flow_budget_must_be_a_budget() -> None:
    with pytest.raises(FlowDefinitionError, match="budget must be a Budget"):
        Flow("f", budget={"max_model_calls": 3})


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_killed_at_the_flow_budget_check_a_new_process_pays_nothing_twice(
        child: Child, server: OpenAICompatibleTestServer, driver: str,
        tmp_path: Path) -> None:
    """The child is held at the flow budget's check that refuses call 3 (calls 1 and 2
    and the tool's result committed, the pause not), and SIGKILLed there."""
    run, resume = ("run", "resume") if driver == "sync" else ("arun", "aresume")
    server.add({"content": "shipping", "usage": {"input_tokens": 100, "output_tokens": 10}},
               {"tool_calls": [tool_call("lookup_order", order_id="A1")],
                "usage": {"input_tokens": 200, "output_tokens": 20,
                          "cached_input_tokens": 50}},
               {"content": "Order A1 has shipped.",
                "usage": {"input_tokens": 300, "output_tokens": 30}})
    running = child.start(run, "fb-k", {"input": "Where is A1?"}, flow="support_flow_budget",
                          hang_at="flow_budget")
    try:
        assert running.stderr is not None
        line = running.stderr.readline()
        assert line == "refusing at the flow budget: 2 of 2 model calls\n", \
            line + running.stderr.read()
        store = child.store()
        # What the kill leaves: both answered calls and the tool's result committed,
        # the run still RUNNING (no pause), the third call never sent.
        assert len(kinds(store, "fb-k", "model.response")) == 2
        assert len(kinds(store, "fb-k", "step.completed")) == 1
        info = store.run_info("fb-k")
        assert info is not None and info.status.value == "running"
        assert server.request_count == 2 and child.effects_lines() == ["lookup A1"]
    finally:
        running.kill()
        running.communicate()
    assert running.returncode == -signal.SIGKILL

    # A new process replays calls 1-2 and the tool from the journal and stops at the
    # same check, with what was spent counted once.
    paused = result_of(child(resume, "fb-k", flow="support_flow_budget"))
    assert paused["status"] == "paused"
    payload = paused["pending"]["payload"]
    assert (payload["scope"], payload["agent"], payload["budget_reached"]) == (
        "flow", "support", "2 of 2 model calls")
    assert payload["spent"] == {"model_calls": 2, "tokens": 330,
                                "cost_usd": pytest.approx(375e-6)}
    assert server.request_count == 2 and child.effects_lines() == ["lookup A1"]

    # Raised by a person's answer (at a terminal, or in code), the run makes the third
    # call only.
    raised = {"budget": {"max_model_calls": 3}}
    if driver == "sync":
        flow_file = tmp_path / "budget_flow.py"
        flow_file.write_text("from agent_flows import FLOWS\n\n"
                             "flow = FLOWS['support_flow_budget']()\n")
        cli = subprocess.run(
            [SCRIPT, "resume", "fb-k", "--flow", f"{flow_file}:flow",
             "--answer", json.dumps(raised), "--db", str(child.db)],
            env={**child.env(), "PYTHONPATH": str(HERE)}, capture_output=True, text=True,
            timeout=60)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        final = child.store().load_latest("fb-k")
        assert final is not None
        done = {"status": str(final.status), "data": final.data, "error": final.error}
    else:
        done = result_of(child(resume, "fb-k", {"answer": raised},
                               flow="support_flow_budget"))
    assert done["status"] == "completed", done["error"]
    assert done["data"]["support"] == "Order A1 has shipped."
    assert server.request_count == 3 and child.effects_lines() == ["lookup A1"]
    assert server.requests[2]["messages"][-1]["role"] == "tool"
    totals = usage_totals(child.store().list_events("fb-k"))
    assert totals is not None
    assert (totals["model_calls"], totals["input_tokens"], totals["cached_input_tokens"],
            totals["output_tokens"]) == (3, 600, 50, 60)
    assert totals["cost_usd"] == pytest.approx(
        (100 + 40 + 150 + 5 + 80 + 300 + 120) / 1e6)
