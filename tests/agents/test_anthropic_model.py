"""AnthropicModel on the official anthropic SDK against a real local server speaking
Anthropic's Messages wire format: tool round trips, stop reasons and usage mapped,
retries through the SDK, clear failures, crash-safe replay, and a key that never
reaches the journal."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import API_KEY, Child, kinds, result_of
from pydantic import BaseModel

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, AnthropicModel, Message, ModelError, Price, tool
from purpose_agent.agents.testing import AnthropicTestServer, tool_call
from purpose_agent.runtime.usage import usage_totals

calls: list[str] = []


@tool
def get_weather(city: str) -> dict:
    """Current weather in a city.

    Args:
        city: The city name.
    """
    calls.append(city)
    return {"city": city, "temp": 21}


@pytest.fixture
def claude() -> Iterator[AnthropicTestServer]:
    calls.clear()
    with AnthropicTestServer(api_key=API_KEY, model="claude-test") as srv:
        yield srv


def _model(server: AnthropicTestServer, **options: Any) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.url, api_key=API_KEY,
                          **{"max_retries": 2, "timeout": 5.0, **options})


def _run(model: AnthropicModel, db: Path, run_id: str, **agent: Any):
    flow = Flow("weather")
    flow.add(Agent("weather", model, "Answer with the weather.", tools=[get_weather], **agent))
    flow.edge("weather", END)
    store = SQLiteCheckpointer(str(db))
    return flow.run({"input": "Weather in Paris?"}, checkpointer=store, run_id=run_id), store


def test_tool_round_trip_on_the_messages_wire_format(claude: AnthropicTestServer,
                                                     tmp_path: Path) -> None:
    claude.add({"content": "Let me look.", "tool_calls": [tool_call("get_weather",
                                                                    city="Paris",
                                                                    id="toolu_1")],
                "usage": {"input_tokens": 900, "output_tokens": 30,
                          "cached_input_tokens": 500, "cache_write_tokens": 100}},
               {"content": "It is 21 degrees in Paris.",
                "usage": {"input_tokens": 1000, "output_tokens": 12,
                          "cached_input_tokens": 600}})
    prices = Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3,
                   cache_write_per_mtok=3.75)
    state, store = _run(_model(claude, prices=prices), tmp_path / "runs.db", "a-1")

    assert state.status.value == "completed"
    assert state.data["weather"] == "It is 21 degrees in Paris."
    assert calls == ["Paris"]
    # The key was sent on every request, in the header the SDK uses for it.
    assert claude.authorizations == [f"Bearer {API_KEY}"] * 2

    first, second = claude.requests
    assert first["model"] == "claude-test" and first["max_tokens"] == 4096
    assert first["system"] == "Answer with the weather."
    assert first["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Weather in Paris?"}]}]
    assert first["tools"] == [{"name": "get_weather",
                               "description": "Current weather in a city.",
                               "input_schema": get_weather.parameters}]
    # The assistant's tool_use turn goes back as sent; the result as a tool_result block.
    assert second["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1",
             "content": json.dumps({"city": "Paris", "temp": 21})}]}]

    # Stop reasons and usage mapped: input counts cache reads and writes.
    first_response, second_response = kinds(store, "a-1", "model.response")
    assert first_response["finish_reason"] == "tool_calls"
    assert second_response["finish_reason"] == "stop"
    assert first_response["usage"] == {"input_tokens": 900, "output_tokens": 30,
                                       "cached_input_tokens": 500,
                                       "cache_write_tokens": 100, "total_tokens": 930}
    assert first_response["cost_usd"] == pytest.approx(
        (300 * 3.0 + 500 * 0.3 + 100 * 3.75 + 30 * 15.0) / 1e6)
    totals = usage_totals(store.list_events("a-1"))
    assert totals is not None and totals["input_tokens"] == 1900
    assert totals["cached_input_tokens"] == 1100


def test_parallel_tool_results_go_back_in_one_user_turn(claude: AnthropicTestServer) -> None:
    claude.add({"tool_calls": [tool_call("a", id="t1"), tool_call("b", id="t2")],
                "finish_reason": "length"})
    model = _model(claude)
    response = model.complete([Message("system", "s1"), Message("system", "s2"),
                               Message("user", "go")], [])
    assert response.finish_reason == "length"  # max_tokens
    assert [c.id for c in response.message.tool_calls] == ["t1", "t2"]
    assert claude.requests[0]["system"] == "s1\n\ns2"
    claude.add("done")
    model.complete([Message("user", "go"), response.message,
                    Message("tool", "ra", tool_call_id="t1"),
                    Message("tool", "rb", tool_call_id="t2")], [])
    turns = claude.requests[1]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in turns[2]["content"]] == ["t1", "t2"]


def test_structured_output_is_asked_as_a_closed_json_schema(claude: AnthropicTestServer,
                                                            tmp_path: Path) -> None:
    class Forecast(BaseModel):
        city: str
        temp: int

    claude.add('{"city": "Paris", "temp": 21}')
    state, _ = _run(_model(claude), tmp_path / "runs.db", "a-s", output_type=Forecast)
    assert state.status.value == "completed"
    assert state.data["weather"] == {"city": "Paris", "temp": 21}
    fmt = claude.requests[0]["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"] == {**Forecast.model_json_schema(), "additionalProperties": False}
    assert claude.requests[0]["system"] == "Answer with the weather."


def test_429_then_success_is_retried_by_the_sdk(claude: AnthropicTestServer,
                                                tmp_path: Path) -> None:
    claude.add({"status": 429, "error": "rate limited"}, {"status": 529}, "sunny")
    state, store = _run(_model(claude), tmp_path / "runs.db", "a-429")
    assert state.status.value == "completed"
    assert state.data["weather"] == "sunny"
    assert claude.request_count == 3
    assert len(kinds(store, "a-429", "model.response")) == 1


def test_500_until_retries_run_out_fails_the_run_naming_the_status(tmp_path: Path) -> None:
    with AnthropicTestServer(then={"status": 500, "error": "upstream exploded"}) as srv:
        state, store = _run(_model(srv, max_retries=2), tmp_path / "runs.db", "a-500")
        assert srv.request_count == 3
    assert state.status.value == "failed"
    [error] = kinds(store, "a-500", "run.error")
    assert error["type"] == "ModelError"
    assert "model 'claude-test' at http://127.0.0.1:" in error["message"]
    assert "HTTP 500 after 3 attempts" in error["message"]
    assert "upstream exploded" in error["message"]


def test_the_api_key_never_reaches_the_database_errors_or_repr(
        claude: AnthropicTestServer, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    claude.add({"tool_calls": [tool_call("get_weather", city="Oslo")]}, "cold",
               {"status": 401, "error": f"invalid x-api-key: {API_KEY}"})
    model = _model(claude)
    assert API_KEY not in repr(model)
    ok, store = _run(model, db, "k-1")
    failed, _ = _run(model, db, "k-2")
    assert ok.status.value == "completed"
    assert failed.status.value == "failed" and failed.error is not None
    assert "HTTP 401 (not retryable)" in failed.error["message"]
    assert API_KEY not in failed.error["message"] and "[redacted]" in failed.error["message"]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("runs.db")]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path.name
    assert all(API_KEY not in e.to_json() for run in ("k-1", "k-2")
               for e in store.list_events(run))


def test_a_wrong_key_is_refused_by_the_server(claude: AnthropicTestServer) -> None:
    claude.add("never")
    model = AnthropicModel("claude-test", base_url=claude.url, api_key="wrong", max_retries=0)
    with pytest.raises(ModelError) as info:
        model.complete([Message("user", "hi")], [])
    assert info.value.status_code == 401 and "wrong" not in str(info.value)


def test_no_key_and_no_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        AnthropicModel("claude-sonnet-4-5")


def test_kill_after_a_committed_response_resume_sends_no_new_request_for_it(
        tmp_path: Path) -> None:
    with AnthropicTestServer(api_key=API_KEY) as srv:
        child = Child(tmp_path / "runs.db", tmp_path / "effects.log", srv)
        srv.add({"tool_calls": [tool_call("lookup_order", order_id="A1")],
                 "usage": {"input_tokens": 1000, "output_tokens": 50}},
                {"content": "Order A1 has shipped.",
                 "usage": {"input_tokens": 2000, "output_tokens": 80}})
        killed = child("run", "c-1", {"input": "Where is A1?"}, flow="support_claude",
                       kill_at="before:lookup_order")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert srv.request_count == 1 and child.effects_lines() == []

        state = result_of(child("resume", "c-1", flow="support_claude"))
        assert state["status"] == "completed"
        assert state["data"]["support"] == "Order A1 has shipped."
        assert srv.request_count == 2  # turn 1 was replayed from the journal
        assert child.effects_lines() == ["lookup A1"]
        assert srv.requests[1]["messages"][-1]["content"][0]["type"] == "tool_result"
        totals = usage_totals(child.store().list_events("c-1"))
        assert totals is not None
        assert (totals["model_calls"], totals["total_tokens"]) == (2, 3130)
        assert totals["cost_usd"] == pytest.approx((3000 * 1.0 + 130 * 4.0) / 1e6)
