"""OpenAIModel against a real local server: retries on 429 / 5xx / timeouts through the
SDK, clear failures once they are exhausted, and an API key that never reaches the
journal."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_helpers import API_KEY, kinds

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, Message, ModelError, OpenAIModel, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call


@tool
def echo(text: str) -> str:
    """Echo the text back."""
    return text


def _run(server: OpenAICompatibleTestServer, db: Path, run_id: str, *, max_retries: int = 2,
         timeout: float = 5.0, api_key: str = API_KEY):
    model = OpenAIModel("test-model", base_url=server.url, api_key=api_key,
                        max_retries=max_retries, timeout=timeout)
    flow = Flow("echo")
    flow.add(Agent("echo", model, "Echo.", tools=[echo]))
    flow.edge("echo", END)
    store = SQLiteCheckpointer(str(db))
    return flow.run({"input": "hello"}, checkpointer=store, run_id=run_id), store


def test_429_then_success_is_retried_by_the_sdk(server: OpenAICompatibleTestServer,
                                                tmp_path: Path) -> None:
    server.add({"status": 429, "error": "rate limited"}, {"status": 503}, "hi there")
    state, store = _run(server, tmp_path / "runs.db", "r-429")
    assert state.status.value == "completed"
    assert state.data["echo"] == "hi there"
    assert server.request_count == 3
    # One durable model step: one request/response pair in the journal.
    assert len(kinds(store, "r-429", "model.request")) == 1
    assert len(kinds(store, "r-429", "model.response")) == 1


def test_500_until_retries_are_exhausted_fails_the_run_naming_the_status(
        tmp_path: Path) -> None:
    with OpenAICompatibleTestServer(then={"status": 500, "error": "upstream exploded"}) as srv:
        state, store = _run(srv, tmp_path / "runs.db", "r-500", max_retries=2)
        assert srv.request_count == 3  # the first try and two retries
    assert state.status.value == "failed"
    [error] = kinds(store, "r-500", "run.error")
    assert error["type"] == "ModelError"
    assert error["node"] == "echo"
    assert "HTTP 500" in error["message"]
    assert "after 3 attempts" in error["message"]
    assert "upstream exploded" in error["message"]
    [response] = kinds(store, "r-500", "model.response")
    assert response["status_code"] == 500 and response["error"] == "ModelError"


def test_resume_of_a_failed_model_call_retries_it_and_completes(tmp_path: Path) -> None:
    with OpenAICompatibleTestServer([{"status": 500}], retry_after_ms=1) as srv:
        state, store = _run(srv, tmp_path / "runs.db", "r-again", max_retries=0)
        assert state.status.value == "failed"
        srv.add({"tool_calls": [tool_call("echo", text="x")]}, "done")
        flow = Flow("echo")
        flow.add(Agent("echo", OpenAIModel("test-model", base_url=srv.url, api_key=API_KEY,
                                           max_retries=0), "Echo.", tools=[echo]))
        flow.edge("echo", END)
        state = flow.resume("r-again", checkpointer=store)
        assert state.status.value == "completed"
        assert srv.request_count == 3


def test_timeout_is_a_clear_model_error(tmp_path: Path) -> None:
    with OpenAICompatibleTestServer(then={"delay": 2.0, "content": "too late"}) as srv:
        state, _ = _run(srv, tmp_path / "runs.db", "r-slow", max_retries=0, timeout=0.2)
    assert state.status.value == "failed"
    assert state.error is not None
    assert state.error["type"] == "ModelError"
    assert "timed out after 0.2s" in state.error["message"]


def test_the_api_key_never_reaches_the_database(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with OpenAICompatibleTestServer(
            [{"tool_calls": [tool_call("echo", text="hi")]}, "hi",
             # A server that echoes the key in its error, as OpenAI's 401 does.
             {"status": 401, "error": f"Incorrect API key provided: {API_KEY}"}],
            ) as srv:
        ok, store = _run(srv, db, "k-1")
        failed, _ = _run(srv, db, "k-2")
        assert srv.authorizations[0] == f"Bearer {API_KEY}"  # it was really sent
    assert ok.status.value == "completed"
    assert failed.status.value == "failed"
    assert failed.error is not None
    assert "HTTP 401" in failed.error["message"]
    assert "(not retryable)" in failed.error["message"]
    assert API_KEY not in failed.error["message"]
    assert "[redacted]" in failed.error["message"]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("runs.db")]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path.name
    for run_id in ("k-1", "k-2"):
        assert all(API_KEY not in e.to_json() for e in store.list_events(run_id))


def test_error_message_and_repr_hide_the_key(server: OpenAICompatibleTestServer) -> None:
    server.add({"status": 400, "error": f"bad request for key {API_KEY}"})
    model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, max_retries=0)
    assert API_KEY not in repr(model)
    with pytest.raises(ModelError) as info:
        model.complete([Message("user", "hi")], [])
    assert info.value.status_code == 400 and not info.value.retryable
    assert API_KEY not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_base_url_and_key_from_the_environment(server: OpenAICompatibleTestServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("PURPOSE_AGENT_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-123")
    server.add({"content": "from env", "usage": {"input_tokens": 3, "output_tokens": 2}})
    model = OpenAIModel("test-model")
    response = model.complete([Message("user", "hi")], [])
    assert model.base_url == server.url
    assert response.message.content == "from env"
    assert response.usage.total_tokens == 5
    assert server.authorizations == ["Bearer env-key-123"]


def test_no_key_and_no_server_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PURPOSE_AGENT_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4o-mini")
