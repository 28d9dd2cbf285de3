"""The tool-calling loop, in process, over real HTTP to a local OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import API_KEY, kinds

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, OpenAIModel, ToolError, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer

calls: list[dict[str, Any]] = []


@tool
def get_weather(city: str, unit: str = "C") -> dict:
    """Current weather in a city.

    Args:
        city: The city name.
        unit: "C" or "F".
    """
    calls.append({"city": city, "unit": unit})
    if city == "Atlantis":
        raise ToolError("no weather station in Atlantis")
    return {"city": city, "temp": 21, "unit": unit}


def _flow(server: OpenAICompatibleTestServer, **agent_options: Any) -> Flow:
    model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, timeout=5.0,
                        max_retries=0)
    flow = Flow("weather")
    flow.add(Agent("weather", model, "Answer with the weather.", tools=[get_weather],
                   **agent_options))
    flow.edge("weather", END)
    return flow


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    """A SQLite file, or the session's PostgreSQL server (tests/conftest.py)."""
    calls.clear()
    url = (request.getfixturevalue("pg_url") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/runs.db")
    with open_checkpointer(url) as cp:
        yield cp


def test_two_turn_tool_loop(server: OpenAICompatibleTestServer,
                            store: BaseCheckpointer) -> None:
    server.add({"tool_calls": [tool_call("get_weather", city="Paris")],
                "usage": {"input_tokens": 40, "output_tokens": 7}},
               {"content": "It is 21 degrees in Paris.",
                "usage": {"input_tokens": 60, "output_tokens": 9}})
    state = _flow(server).run({"input": "Weather in Paris?"}, checkpointer=store, run_id="w-1")

    assert state.status.value == "completed"
    assert state.data["weather"] == "It is 21 degrees in Paris."
    assert calls == [{"city": "Paris", "unit": "C"}]
    assert server.request_count == 2

    first, second = server.requests
    assert first["model"] == "test-model"
    assert first["messages"] == [{"role": "system", "content": "Answer with the weather."},
                                 {"role": "user", "content": "Weather in Paris?"}]
    [spec] = first["tools"]
    assert spec["function"]["name"] == "get_weather"
    assert spec["function"]["description"] == "Current weather in a city."
    assert spec["function"]["parameters"]["properties"]["city"] == {
        "type": "string", "description": "The city name."}
    assert spec["function"]["parameters"]["required"] == ["city"]
    assert second["messages"][-1] == {
        "role": "tool", "tool_call_id": "call_1_0",
        "content": json.dumps({"city": "Paris", "temp": 21, "unit": "C"})}

    # The conversation lives in the run data, as journaled.
    stored = store.load_latest("w-1")
    assert stored is not None
    assert [m["role"] for m in stored.data["messages"]] == ["user", "assistant", "tool",
                                                            "assistant"]
    # Events: model name, usage, latency, short content; the tool's call and result.
    requests = kinds(store, "w-1", "model.request")
    responses = kinds(store, "w-1", "model.response")
    assert [r["turn"] for r in requests] == [1, 2]
    assert requests[0]["model"] == "test-model" and requests[0]["last"] == "Weather in Paris?"
    assert responses[0]["usage"] == {"input_tokens": 40, "output_tokens": 7,
                                     "cached_input_tokens": 0, "cache_write_tokens": 0,
                                     "total_tokens": 47}
    assert "cost_usd" not in responses[0]  # the model has no prices
    assert responses[0]["tool_calls"] == ["get_weather"]
    assert responses[1]["content"] == "It is 21 degrees in Paris."
    assert all(isinstance(r["latency_ms"], int) for r in responses)
    # Model calls are told by model.* events only; tool calls by step.started / .completed.
    assert [p["step"] for p in kinds(store, "w-1", "step.started")] == ["tool:get_weather"]
    results = kinds(store, "w-1", "step.completed")
    assert [p["step"] for p in results] == ["tool:get_weather"]
    assert results[0]["result"].startswith('{"latency_ms":')
    assert '"result":{"city":"Paris"' in results[0]["result"]


@pytest.mark.parametrize("bad_call", [
    tool_call("get_weather", city=12),                 # wrong type
    tool_call("get_weather", town="Paris"),            # unknown and missing argument
    tool_call("get_weather", '{"city": "Par'),         # not JSON
    tool_call("get_weather", '["Paris"]'),             # not an object
    tool_call("get_weather", '{"city": NaN}'),         # not strict JSON
    tool_call("launch_rockets", target="moon"),        # no such tool
], ids=["wrong-type", "unknown-arg", "broken-json", "not-object", "nan", "unknown-tool"])
def test_invalid_tool_calls_go_back_to_the_model_and_the_run_completes(
        server: OpenAICompatibleTestServer, store: BaseCheckpointer,
        bad_call: dict[str, Any]) -> None:
    server.add({"tool_calls": [bad_call]},
               {"tool_calls": [tool_call("get_weather", city="Paris")]},
               "21 degrees.")
    state = _flow(server).run({"input": "Weather?"}, checkpointer=store, run_id="w-2")

    assert state.status.value == "completed"
    assert state.data["weather"] == "21 degrees."
    assert calls == [{"city": "Paris", "unit": "C"}]  # the bad call never ran the tool
    error = json.loads(server.requests[1]["messages"][-1]["content"])
    assert set(error) == {"error"}
    assert ("get_weather" in error["error"]) or ("launch_rockets" in error["error"])


def test_tool_error_goes_back_to_the_model(server: OpenAICompatibleTestServer,
                                           store: BaseCheckpointer) -> None:
    server.add({"tool_calls": [tool_call("get_weather", city="Atlantis")]},
               "I could not find Atlantis.")
    state = _flow(server).run({"input": "Weather in Atlantis?"}, checkpointer=store,
                              run_id="w-3")
    assert state.status.value == "completed"
    assert json.loads(server.requests[1]["messages"][-1]["content"]) == {
        "error": "no weather station in Atlantis"}


def test_no_answer_within_max_turns_fails_the_run_clearly(
        server: OpenAICompatibleTestServer, store: BaseCheckpointer) -> None:
    server.add(*[{"tool_calls": [tool_call("get_weather", city="Oslo")]}] * 2)
    state = _flow(server, max_turns=2).run({"input": "Weather?"}, checkpointer=store,
                                           run_id="w-4")
    assert state.status.value == "failed"
    assert state.error is not None
    assert state.error["type"] == "AgentError"
    assert "2 model calls without a final answer" in state.error["message"]
    assert server.request_count == 2
