"""The Agent node with ScriptedModel (no HTTP): replay on node retry, tool definitions,
approval answers, and the test doubles themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from purpose_agent import END, Flow, SQLiteCheckpointer, step
from purpose_agent.agents import (
    Agent,
    Message,
    ModelError,
    ModelResponse,
    ToolDefinitionError,
    tool,
)
from purpose_agent.agents.testing import ScriptedModel, tool_call


def _store(tmp_path: Path) -> SQLiteCheckpointer:
    return SQLiteCheckpointer(str(tmp_path / "runs.db"))


def test_node_retry_replays_committed_model_responses(tmp_path: Path) -> None:
    attempts: list[int] = []

    @tool
    def flaky(n: int) -> int:
        """Fails the first time."""
        attempts.append(n)
        if len(attempts) == 1:
            raise RuntimeError("transient")
        return n * 2

    model = ScriptedModel([{"tool_calls": [tool_call("flaky", n=4)]}, "eight"])
    flow = Flow("retry")
    flow.add(Agent("calc", model, "Compute.", tools=[flaky]), retries=1, backoff=0.0)
    flow.edge("calc", END)
    state = flow.run({"input": "4*2?"}, checkpointer=_store(tmp_path), run_id="s-1")
    assert state.status.value == "completed"
    assert state.data["calc"] == "eight"
    assert attempts == [4, 4]
    assert model.calls == 2  # turn 1 was replayed on the retried attempt, not re-asked
    assert model.requests[1][-1] == {"role": "tool", "content": "8", "tool_call_id": "call_1_0"}


@pytest.mark.parametrize(("answer", "ran"), [
    (True, True), ({"approve": True}, True), (False, False), ("yes please", False),
    ({"approve": True, "args": {"n": "not a number"}}, False),
])
def test_approval_answers(tmp_path: Path, answer: Any, ran: bool) -> None:
    runs: list[int] = []

    @tool(requires_approval=True)
    def delete(n: int) -> str:
        """Delete record n."""
        runs.append(n)
        return "deleted"

    model = ScriptedModel([{"tool_calls": [tool_call("delete", n=7)]}, "ok"])
    flow = Flow("approve")
    flow.add(Agent("admin", model, "", tools=[delete], output_key="answer"))
    flow.edge("admin", END)
    store = _store(tmp_path)
    paused = flow.run({"input": "delete 7"}, checkpointer=store, run_id="a-1")
    assert paused.status.value == "paused"
    assert paused.pending is not None
    assert paused.pending["payload"] == {"tool": "delete", "args": {"n": 7}, "agent": "admin",
                                         "call_id": "call_1_0"}
    state = flow.resume("a-1", checkpointer=store, answer=answer)
    assert state.status.value == "completed"
    assert state.data["answer"] == "ok"
    assert runs == ([7] if ran else [])
    assert model.calls == 2
    if not ran:
        assert model.requests[1][-1]["content"] != "deleted"


def test_input_as_messages_and_instructions_from_data(tmp_path: Path) -> None:
    model = ScriptedModel(["Bonjour"])
    flow = Flow("chat")
    flow.add(Agent("chat", model, lambda data: f"Answer in {data['lang']}.",
                   input_key="history", messages_key="history"))
    flow.edge("chat", END)
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
               {"role": "user", "content": "again"}]
    state = flow.run({"history": history, "lang": "French"}, checkpointer=_store(tmp_path))
    assert model.requests[0][0] == {"role": "system", "content": "Answer in French."}
    assert model.requests[0][1:] == history
    assert state.data["history"][-1] == {"role": "assistant", "content": "Bonjour"}


def test_missing_input_fails_with_a_clear_error(tmp_path: Path) -> None:
    flow = Flow("empty")
    flow.add(Agent("a", ScriptedModel(["x"]), "hi"))
    flow.edge("a", END)
    state = flow.run({}, checkpointer=_store(tmp_path))
    assert state.status.value == "failed"
    assert state.error is not None and "found no 'input'" in state.error["message"]


class Address(BaseModel):
    city: str


def test_schema_from_type_hints_and_docstring() -> None:
    @tool(name="ship", at_most_once=True)
    def ship_order(order_id: str, mode: Literal["air", "sea"] = "sea",
                   to: Address | None = None,
                   weight: Annotated[float, Field(gt=0, description="kg")] = 1.0) -> str:
        """Ship an order.

        More detail that is not part of the description.

        Args:
            order_id: Which order,
                as printed on the invoice.
            mode: How to ship it.
        """
        return order_id

    schema = ship_order.schema
    assert schema["name"] == "ship" and schema["description"] == "Ship an order."
    props = schema["parameters"]["properties"]
    assert props["order_id"] == {"type": "string",
                                 "description": "Which order, as printed on the invoice."}
    assert props["mode"]["enum"] == ["air", "sea"] and props["mode"]["default"] == "sea"
    assert props["weight"]["description"] == "kg" and props["weight"]["exclusiveMinimum"] == 0
    assert schema["parameters"]["required"] == ["order_id"]
    assert schema["parameters"]["additionalProperties"] is False
    assert ship_order.validate({"order_id": "A", "to": {"city": "Oslo"}}) is None
    assert "weight" in (ship_order.validate({"order_id": "A", "weight": -1}) or "")
    assert ship_order.step_options.at_most_once is True
    assert ship_order("A") == "A"  # outside an agent, a plain call


def test_functions_without_a_schema_are_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="plain named parameter"):
        tool(name="splat")(lambda *args: None)
    with pytest.raises(ToolDefinitionError, match="tool name"):
        tool(name="no spaces allowed")(lambda: None)


def test_scripted_model_counts_calls_and_runs_out_clearly() -> None:
    model = ScriptedModel(["one", {"content": "two", "usage": {"input_tokens": 1}}])
    assert model.complete([Message("user", "a")], []).message.content == "one"
    second = model.complete([Message("user", "b")], [{"name": "t"}])
    assert second.usage.input_tokens == 1 and model.tools[1] == ["t"]
    with pytest.raises(ModelError, match="called 3 times but has 2"):
        model.complete([Message("user", "c")], [])
    assert model.calls == 3


def test_model_response_round_trips_through_json() -> None:
    model = ScriptedModel([{"tool_calls": [tool_call("t", {"a": [1, "é"]}, id="c9")]}])
    response = model.complete([Message("user", "x")], [])
    assert ModelResponse.from_dict(response.to_dict()) == response
    assert response.message.tool_calls[0].arguments == '{"a": [1, "\\u00e9"]}'


def test_a_step_inside_a_sequential_tool_call_keeps_the_agents_places(tmp_path: Path) -> None:
    """The case found in review: a tool whose function calls a ``@step`` helper, the
    Agent's calls one at a time; the node retried after the model's last turn fails.
    The retry replays the model turns and the tool calls at the places they had."""
    calls: list[str] = []

    @step
    def lookup(key: str) -> str:
        calls.append(f"lookup {key}")
        return f"value of {key}"

    @tool
    def find(key: str) -> str:
        """Find a value."""
        return lookup(key)

    model = ScriptedModel([{"tool_calls": [tool_call("find", key="k")]},
                           {"tool_calls": [tool_call("find", key="j")]},
                           RuntimeError("model hiccup"), "done"])
    flow = Flow("nested-tool")
    flow.add(Agent("finder", model, "Find.", tools=[find], max_concurrent_tools=1),
             retries=1, backoff=0.0)
    flow.edge("finder", END)
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    state = flow.run({"input": "k and j?"}, checkpointer=cp, run_id="t1")
    assert state.status == "completed", state.error
    assert state.data["finder"] == "done"
    assert calls == ["lookup k", "lookup j"]  # each tool call ran once
    assert [r.name for r in cp.load_steps("t1", 1) if r.kind == "step"] == [
        "model:finder", "tool:find", "model:finder", "tool:find", "model:finder"]
