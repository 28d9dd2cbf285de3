"""Streaming: ``Agent(..., on_token=fn)`` gets the answer's text while the model sends
it (the local server really streams Server-Sent Events in OpenAI's chunk format, and
holds the rest of a stream until the test has seen its first pieces); the journal keeps
the whole response only. A crash mid-stream re-sends that one request."""

from __future__ import annotations

import asyncio
import signal

import pytest
from agent_helpers import API_KEY, Child, kinds, result_of

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, OpenAIModel, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call
from purpose_agent.runtime.checkpoint import BaseCheckpointer

ANSWER = "Your order A1 has shipped today."


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_tokens_arrive_while_the_model_streams_and_only_the_answer_is_journaled(
        store: BaseCheckpointer, driver: str) -> None:
    tokens: list[str] = []
    with OpenAICompatibleTestServer(
            [{"tool_calls": [tool_call("lookup_order", order_id="A1")],
              "usage": {"input_tokens": 30, "output_tokens": 8}},
             {"content": ANSWER, "hold_after": 3,
              "usage": {"input_tokens": 50, "output_tokens": 9}}],
            together_timeout=60.0) as server:

        def on_token(text: str) -> None:
            tokens.append(text)
            if len(tokens) == 2:
                # The server holds the rest of the stream until now: had the pieces
                # come only at the end, it would hang up after 20 s and the run fail.
                server.release_stream()

        model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY,
                            max_retries=0)
        flow = Flow("streaming")
        flow.add(Agent("support", model, "Answer.", tools=[lookup_order], on_token=on_token))
        flow.edge("support", END)
        data = {"input": "Where is A1?"}
        state = (flow.run(data, checkpointer=store, run_id="s-1") if driver == "sync"
                 else asyncio.run(flow.arun(data, checkpointer=store, run_id="s-1")))
        assert state.status.value == "completed", state.error
        assert all(request["stream"] is True for request in server.requests)

    assert state.data["support"] == ANSWER
    assert len(tokens) > 3 and "".join(tokens) == ANSWER
    # The tool call came in pieces too, and was put back together.
    assert state.data["messages"][1]["tool_calls"][0]["function"] == {
        "name": "lookup_order", "arguments": '{"order_id": "A1"}'}
    # The journal holds each whole response with its streamed usage, never the pieces.
    responses = kinds(store, "s-1", "model.response")
    assert [r["usage"]["total_tokens"] for r in responses] == [38, 59]
    assert responses[1]["content"] == ANSWER
    assert not any("token" in str(e.kind) for e in store.list_events("s-1"))


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_kill_mid_stream_resends_that_one_request(
        child: Child, server: OpenAICompatibleTestServer, driver: str) -> None:
    run, resume = ("run", "resume") if driver == "sync" else ("arun", "aresume")
    server.add({"content": ANSWER, "hold_after": 3}, ANSWER)
    running = child.start(run, "t-s", {"input": "Where is A1?"}, flow="support_stream")
    try:
        assert server.holding.wait(60), "the child never started streaming"
        assert running.stderr is not None
        # The two pieces sent before the hold reached on_token, mid-stream.
        assert running.stderr.read(len("Your ord")) == "Your ord"
    finally:
        running.kill()
        running.communicate()
        server.release_stream()
    assert running.returncode == -signal.SIGKILL
    assert server.request_count == 1

    resumed = child(resume, "t-s", flow="support_stream")
    state = result_of(resumed)
    assert state["status"] == "completed" and state["data"]["support"] == ANSWER
    assert resumed.stderr.endswith(ANSWER)  # streamed again, whole this time
    # The one request paid twice: the same request, sent again.
    assert server.request_count == 2
    first, again = server.requests
    assert first["messages"] == again["messages"]
    # Usage is counted once: the killed stream's response was never journaled.
    store = child.store()
    assert len(kinds(store, "t-s", "model.response")) == 1
    assert [p["turn"] for p in kinds(store, "t-s", "model.request")] == [1]
