"""Structured output: Agent(output_type=...) asks for a JSON schema (natively through
OpenAI's response_format, else in the system message), validates the final answer,
sends invalid answers back with the errors (bounded), and stores the value as JSON."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pytest
from agent_helpers import API_KEY, kinds
from pydantic import BaseModel, Field

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, Message, ModelResponse, OpenAIModel, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, ScriptedModel, tool_call


class Verdict(BaseModel):
    """A support ticket's triage."""

    category: Literal["billing", "shipping", "other"]
    urgent: bool
    due: date
    tags: list[str] = Field(default_factory=list)


GOOD = {"category": "shipping", "urgent": True, "due": "2026-12-01", "tags": ["late"]}


def _store(tmp_path: Path) -> SQLiteCheckpointer:
    return SQLiteCheckpointer(str(tmp_path / "runs.db"))


def _flow(model: Any, **options: Any) -> Flow:
    flow = Flow("triage")
    flow.add(Agent("triage", model, "Triage the ticket.", output_type=Verdict, **options))
    flow.edge("triage", END)
    return flow


def test_openai_gets_the_schema_as_response_format_and_a_second_chance(
        server: OpenAICompatibleTestServer, tmp_path: Path) -> None:
    bad = {"category": "shipping", "urgent": "very", "due": "soon"}
    server.add(json.dumps(bad), f"```json\n{json.dumps(GOOD)}\n```")
    model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, max_retries=0)
    store = _store(tmp_path)
    state = _flow(model).run({"input": "My parcel is late"}, checkpointer=store, run_id="o-1")

    assert state.status.value == "completed"
    assert state.data["triage"] == GOOD  # model_dump(mode="json") of the validated value
    assert Verdict.model_validate(state.data["triage"]).due == date(2026, 12, 1)

    first, second = server.requests
    fmt = first["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict"
    assert fmt["json_schema"]["description"] == "A support ticket's triage."
    assert fmt["json_schema"]["schema"] == Verdict.model_json_schema()
    # Natively asked: the system message is the agent's own.
    assert first["messages"][0] == {"role": "system", "content": "Triage the ticket."}
    # The invalid answer went back with what was wrong with it, field by field.
    retry = second["messages"][-1]
    assert retry["role"] == "user"
    assert "did not validate against the Verdict schema" in retry["content"]
    assert "urgent:" in retry["content"] and "due:" in retry["content"]
    assert second["messages"][-2] == {"role": "assistant", "content": json.dumps(bad)}
    assert [r["turn"] for r in kinds(store, "o-1", "model.request")] == [1, 2]


@pytest.mark.parametrize("retries", [0, 2])
def test_answers_that_never_validate_fail_the_node_after_the_bounded_tries(
        tmp_path: Path, retries: int) -> None:
    model = ScriptedModel(["not json at all"] * 5)
    state = _flow(model, output_retries=retries).run(
        {"input": "?"}, checkpointer=_store(tmp_path), run_id="o-2")
    assert state.status.value == "failed"
    assert state.error is not None and state.error["type"] == "AgentError"
    assert (f"the final answer did not validate as Verdict after {retries + 1} tries: "
            "the answer is not JSON") in state.error["message"]
    assert model.calls == retries + 1


def test_a_model_without_native_output_is_asked_in_the_system_message(
        tmp_path: Path) -> None:
    class PlainModel:  # the bare Model protocol: complete(messages, tools), no output=
        name = "plain"

        def __init__(self) -> None:
            self.seen: list[list[Message]] = []

        def complete(self, messages: list[Message],
                     tools: list[dict[str, Any]]) -> ModelResponse:
            self.seen.append(messages)
            return ModelResponse(Message("assistant", json.dumps(GOOD)))

    model = PlainModel()
    state = _flow(model).run({"input": "late"}, checkpointer=_store(tmp_path))
    assert state.status.value == "completed" and state.data["triage"] == GOOD
    system = model.seen[0][0]
    assert system.role == "system" and system.content is not None
    assert system.content.startswith("Triage the ticket.\n\nWhen you give your final answer")
    assert json.dumps(Verdict.model_json_schema()) in system.content


def test_a_non_object_output_type_is_asked_for_wrapped(tmp_path: Path) -> None:
    model = ScriptedModel(['["a", 2]', '{"response": ["a", "b"]}'])
    flow = Flow("tags")
    flow.add(Agent("tags", model, output_type=list[str]))
    flow.edge("tags", END)
    state = flow.run({"input": "tags?"}, checkpointer=_store(tmp_path))
    assert state.status.value == "completed"
    assert state.data["tags"] == ["a", "b"]
    asked = model.outputs[0]
    assert asked is not None and asked["schema"] == {
        "type": "object", "properties": {"response": {"type": "array",
                                                      "items": {"type": "string"}}},
        "required": ["response"]}
    assert '{"response": ...}' in model.requests[1][-1]["content"]


def test_a_node_retry_replays_invalid_answers_and_retry_prompts(tmp_path: Path) -> None:
    """The retry prompt is rebuilt from the journaled answer, so a re-executed node asks
    nothing twice: invalid answer, tool call, (the tool fails, the node retries), answer."""
    attempts: list[str] = []

    @tool
    def check_carrier(order_id: str) -> str:
        """Ask the carrier about an order."""
        attempts.append(order_id)
        if len(attempts) == 1:
            raise RuntimeError("carrier API down")
        return "in transit"

    model = ScriptedModel(['{"category": "parcel"}',
                           {"tool_calls": [tool_call("check_carrier", order_id="A1")]},
                           json.dumps(GOOD)])
    flow = Flow("triage")
    flow.add(Agent("triage", model, "Triage.", tools=[check_carrier], output_type=Verdict),
             retries=1, backoff=0.0)
    flow.edge("triage", END)
    state = flow.run({"input": "late"}, checkpointer=_store(tmp_path))
    assert state.status.value == "completed"
    assert state.data["triage"] == GOOD
    assert attempts == ["A1", "A1"]
    assert model.calls == 3  # turns 1 and 2 were replayed on the second attempt
    roles = [m["role"] for m in state.data["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant"]


def test_an_output_type_without_a_schema_is_refused() -> None:
    with pytest.raises(TypeError, match=r"output_type .* has no JSON schema"):
        Agent("bad", ScriptedModel([]), output_type=object())
    with pytest.raises(ValueError, match="output_retries"):
        Agent("bad", ScriptedModel([]), output_type=Verdict, output_retries=-1)
