"""AnthropicModel streams through the anthropic SDK: the local Anthropic-wire server
really sends Server-Sent Events in the Messages API's streaming format (message_start,
content blocks in deltas, message_delta with the usage, message_stop) and holds the rest
of a stream until the test has seen its first pieces. The journal keeps the whole
response only, with its usage exact; a crash mid-stream re-sends that one request."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import anthropic
import pytest
from agent_helpers import API_KEY, Child, kinds, result_of

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, AnthropicModel, Message, tool
from purpose_agent.agents.testing import AnthropicTestServer, tool_call
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.usage import usage_totals

ANSWER = "Your order A1 has shipped today."
looked_up: list[str] = []


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order."""
    looked_up.append(order_id)
    return {"order_id": order_id, "status": "shipped"}


def _model(server: AnthropicTestServer) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.url, api_key=API_KEY,
                          max_retries=0, timeout=60.0)


# Chunks of a streamed text answer before its first text piece: message_start, ping,
# content_block_start. hold_after=5 sends two 4-character pieces, then holds.
HOLD_AFTER_TWO_PIECES = 5


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_tokens_arrive_while_claude_streams_and_only_the_answer_is_journaled(
        store: BaseCheckpointer, driver: str) -> None:
    looked_up.clear()
    tokens: list[str] = []
    with AnthropicTestServer(
            [{"content": "Let me look.",
              "tool_calls": [tool_call("lookup_order", order_id="A1", id="toolu_a"),
                             tool_call("lookup_order", order_id="B2", id="toolu_b")],
              "usage": {"input_tokens": 900, "output_tokens": 30,
                        "cached_input_tokens": 500, "cache_write_tokens": 100}},
             {"content": ANSWER, "hold_after": HOLD_AFTER_TWO_PIECES,
              "usage": {"input_tokens": 1000, "output_tokens": 12,
                        "cached_input_tokens": 600}}],
            api_key=API_KEY, together_timeout=60.0) as server:

        def on_token(text: str) -> None:
            tokens.append(text)
            if "".join(tokens) == "Let me look.Your ord":
                # The server holds the rest of the answer until now: had the pieces
                # come only at the end, it would hang up after 60 s and the run fail.
                server.release_stream()

        flow = Flow("claude-streaming")
        flow.add(Agent("support", _model(server), "Answer.", tools=[lookup_order],
                       on_token=on_token))
        flow.edge("support", END)
        data = {"input": "Where are A1 and B2?"}
        state = (flow.run(data, checkpointer=store, run_id="as-1") if driver == "sync"
                 else asyncio.run(flow.arun(data, checkpointer=store, run_id="as-1")))
        assert state.status.value == "completed", state.error
        assert [r.get("stream") for r in server.requests] == [True, True]
        assert server.holding.is_set()

    assert state.data["support"] == ANSWER
    assert "".join(tokens) == "Let me look." + ANSWER and len(tokens) > 6
    # Both tool_use blocks came as JSON in pieces, and were put back together.
    assert sorted(looked_up) == ["A1", "B2"]
    reply = state.data["messages"][1]
    assert reply["content"] == "Let me look."
    assert [(c["id"], c["function"]) for c in reply["tool_calls"]] == [
        ("toolu_a", {"name": "lookup_order", "arguments": '{"order_id": "A1"}'}),
        ("toolu_b", {"name": "lookup_order", "arguments": '{"order_id": "B2"}'})]
    # The journal holds each whole response with its usage mapped (cache reads and
    # writes inside input, output from the last message_delta), never the pieces.
    first, second = kinds(store, "as-1", "model.response")
    assert first["finish_reason"] == "tool_calls" and second["finish_reason"] == "stop"
    assert first["usage"] == {"input_tokens": 900, "output_tokens": 30,
                              "cached_input_tokens": 500, "cache_write_tokens": 100,
                              "total_tokens": 930}
    assert second["usage"] == {"input_tokens": 1000, "output_tokens": 12,
                               "cached_input_tokens": 600, "cache_write_tokens": 0,
                               "total_tokens": 1012}
    assert second["content"] == ANSWER
    assert not any("token" in str(e.kind) for e in store.list_events("as-1"))


def test_the_stream_is_the_messages_api_stream_the_sdk_itself_reads(
        claude: AnthropicTestServer) -> None:
    """The server's events are what the SDK's own stream helper accumulates into the
    message the non-streaming API returns: the wire format is the real one."""
    entry = {"content": "Checking.", "tool_calls": [tool_call("lookup_order", id="t1",
                                                              order_id="A1")],
             "usage": {"input_tokens": 40, "output_tokens": 7, "cached_input_tokens": 8}}
    claude.add(entry, entry)
    client = anthropic.Anthropic(base_url=claude.url, api_key=API_KEY, max_retries=0)
    request: dict[str, Any] = {"model": "claude-test", "max_tokens": 100,
                               "messages": [{"role": "user", "content": "A1?"}]}
    whole = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        streamed = stream.get_final_message()
    assert streamed.model_dump(exclude={"id"}) == whole.model_dump(exclude={"id"})


def test_a_streamed_call_direct_and_async_gives_the_same_response(
        claude: AnthropicTestServer) -> None:
    entry = {"tool_calls": [tool_call("lookup_order", id="t9", order_id="Z9")],
             "finish_reason": "length", "usage": {"input_tokens": 21, "output_tokens": 3}}
    claude.add(entry, entry, entry)
    model = _model(claude)
    pieces: list[str] = []
    streamed = model.complete([Message("user", "Z9?")], [], on_token=pieces.append)
    astreamed = asyncio.run(model.acomplete([Message("user", "Z9?")], [],
                                            on_token=pieces.append))
    whole = model.complete([Message("user", "Z9?")], [])
    assert [r.get("stream") for r in claude.requests] == [True, True, None]
    assert pieces == []  # no text: a tool call only
    assert streamed.to_dict() == astreamed.to_dict() == whole.to_dict()
    assert streamed.finish_reason == "length"
    assert streamed.message.tool_calls[0].arguments == '{"order_id": "Z9"}'


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_kill_mid_stream_resends_that_one_request(
        claude_child: Child, claude: AnthropicTestServer, driver: str) -> None:
    run, resume = ("run", "resume") if driver == "sync" else ("arun", "aresume")
    claude.add({"content": ANSWER, "hold_after": HOLD_AFTER_TWO_PIECES,
                "usage": {"input_tokens": 700, "output_tokens": 9,
                          "cached_input_tokens": 300}},
               {"content": ANSWER, "usage": {"input_tokens": 700, "output_tokens": 9,
                                             "cached_input_tokens": 300}})
    running = claude_child.start(run, "t-cs", {"input": "Where is A1?"},
                                 flow="support_claude_stream")
    try:
        assert claude.holding.wait(60), "the child never started streaming"
        assert running.stderr is not None
        # The two pieces sent before the hold reached on_token, mid-stream.
        assert running.stderr.read(len("Your ord")) == "Your ord"
    finally:
        running.kill()
        running.communicate()
        claude.release_stream()
    assert running.returncode == -signal.SIGKILL
    assert claude.request_count == 1

    resumed = claude_child(resume, "t-cs", flow="support_claude_stream")
    state = result_of(resumed)
    assert state["status"] == "completed" and state["data"]["support"] == ANSWER
    assert resumed.stderr.endswith(ANSWER)  # streamed again, whole this time
    # The one request paid twice: the same request, sent again.
    assert claude.request_count == 2
    first, again = claude.requests
    assert first["messages"] == again["messages"] and again["stream"] is True
    # Usage is counted once: the killed stream's response was never journaled.
    store = claude_child.store()
    assert len(kinds(store, "t-cs", "model.response")) == 1
    assert [p["turn"] for p in kinds(store, "t-cs", "model.request")] == [1]
    totals = usage_totals(store.list_events("t-cs"))
    assert totals is not None
    assert (totals["model_calls"], totals["input_tokens"], totals["cached_input_tokens"],
            totals["output_tokens"]) == (1, 700, 300, 9)
    assert totals["cost_usd"] == pytest.approx((400 * 1.0 + 300 * 0.1 + 9 * 4.0) / 1e6)
