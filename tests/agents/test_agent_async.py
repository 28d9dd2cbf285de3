"""The Agent in ``async def`` flows: ``await flow.arun(...)`` awaits its model calls
(the SDKs' async clients) and its tools, so one event loop drives many agents at once;
and a response's several tool calls run together, each its own durable step."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from agent_helpers import API_KEY, kinds

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, AnthropicModel, OpenAIModel, tool
from purpose_agent.agents.testing import (
    AnthropicTestServer,
    OpenAICompatibleTestServer,
    tool_call,
)
from purpose_agent.runtime.checkpoint import BaseCheckpointer, InMemoryCheckpointer

RUNS = 100


def _openai(server: OpenAICompatibleTestServer) -> OpenAIModel:
    return OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, timeout=60.0,
                       max_retries=0)


def test_one_event_loop_runs_100_agents_whose_calls_overlap(store: BaseCheckpointer) -> None:
    """The server answers no request before all 100 are in flight together: if one
    agent's model call blocked the event loop, the others could not send theirs, and
    every call would fail after the server's wait."""
    looked_up: list[str] = []

    @tool
    async def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        await asyncio.sleep(0)  # an async tool: awaited on the flow's own loop
        looked_up.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    script = [{"tool_calls": [tool_call("lookup_order", order_id="A1")]}] * RUNS
    # A generous wait: the runs' store commits share the one loop thread, slow on a
    # loaded machine; calls made one at a time would never get past the first.
    with OpenAICompatibleTestServer(script + ["Shipped."] * RUNS, together=RUNS,
                                    together_timeout=120.0) as server:
        flow = Flow("async-support")
        flow.add(Agent("support", _openai(server), "Answer.", tools=[lookup_order]))
        flow.edge("support", END)

        async def main() -> list[Any]:
            return list(await asyncio.gather(*(
                flow.arun({"input": f"order {i}?"}, checkpointer=store, run_id=f"r-{i}")
                for i in range(RUNS))))

        states = asyncio.run(main())
        assert [s.status.value for s in states] == ["completed"] * RUNS
        assert {s.data["support"] for s in states} == {"Shipped."}
        assert server.max_in_flight == RUNS  # both rounds: all 100 calls at once
        assert server.request_count == 2 * RUNS
    assert looked_up == ["A1"] * RUNS
    assert len(kinds(store, "r-7", "model.response")) == 2


def test_async_anthropic_agent_with_a_sync_tool() -> None:
    """AnthropicModel under arun goes through AsyncAnthropic; a plain (sync) tool runs in
    a thread meanwhile."""
    thread_names: list[str] = []

    @tool
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        thread_names.append(threading.current_thread().name)
        return {"order_id": order_id, "status": "shipped"}

    with AnthropicTestServer([{"tool_calls": [tool_call("lookup_order", order_id="A1")]},
                              "It shipped."]) as claude:
        flow = Flow("async-claude")
        flow.add(Agent("support", AnthropicModel("claude-test", base_url=claude.url,
                                                 api_key=API_KEY, max_retries=0),
                       "Answer.", tools=[lookup_order]))
        flow.edge("support", END)
        state = asyncio.run(flow.arun({"input": "A1?"}, checkpointer=InMemoryCheckpointer(),
                                      run_id="c-1"))
        assert state.status.value == "completed" and state.data["support"] == "It shipped."
        assert claude.request_count == 2
        result = claude.requests[1]["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and "shipped" in result["content"]
    assert thread_names and thread_names[0] != threading.main_thread().name


def _parallel_flow(server: OpenAICompatibleTestServer, tools: list[Any],
                   **options: Any) -> Flow:
    flow = Flow("parallel")
    flow.add(Agent("support", _openai(server), "Answer.", tools=tools, **options))
    flow.edge("support", END)
    return flow


THREE = {"tool_calls": [tool_call("lookup", order_id=o, id=f"c-{o}") for o in "ABC"]}


def test_a_responses_tool_calls_run_together_results_in_the_models_order(
        store: BaseCheckpointer) -> None:
    """Three calls wait for each other (a barrier of 3): run one at a time, the first
    would time out. The slowest finishes first; the model still reads A, B, C."""
    together = threading.Barrier(3, timeout=20)
    finished: list[str] = []
    lock = threading.Lock()

    @tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        together.wait()
        with lock:
            finished.append(order_id)
        return f"order {order_id}: shipped"

    with OpenAICompatibleTestServer([THREE, "All shipped."]) as server:
        state = _parallel_flow(server, [lookup]).run({"input": "A, B, C?"},
                                                     checkpointer=store, run_id="p-1")
        assert state.status.value == "completed", state.error
        tool_messages = server.requests[1]["messages"][-3:]
    assert [(m["role"], m["tool_call_id"], m["content"]) for m in tool_messages] == [
        ("tool", f"c-{o}", f"order {o}: shipped") for o in "ABC"]
    assert sorted(finished) == ["A", "B", "C"]
    # Each call is its own durable step, at its own place in the node execution.
    steps = store.load_steps("p-1", 1)
    assert [(s.name, s.status, s.result["result"]) for s in steps if s.name == "tool:lookup"] == [
        ("tool:lookup", "done", f"order {o}: shipped") for o in "ABC"]


def test_async_tool_calls_run_together_and_are_bounded(store: BaseCheckpointer) -> None:
    """Under arun, four async calls with max_concurrent_tools=2: two at a time (they
    wait for each other in pairs), never more."""
    state_lock = threading.Lock()
    running = {"now": 0, "max": 0}
    pairs = asyncio.Barrier(2)

    @tool
    async def lookup(order_id: str) -> str:
        """Look up an order."""
        with state_lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        await asyncio.wait_for(pairs.wait(), 20)
        with state_lock:
            running["now"] -= 1
        return order_id

    four = {"tool_calls": [tool_call("lookup", order_id=o, id=f"c-{o}") for o in "ABCD"]}
    with OpenAICompatibleTestServer([four, "Done."]) as server:
        state = asyncio.run(_parallel_flow(server, [lookup], max_concurrent_tools=2).arun(
            {"input": "?"}, checkpointer=store, run_id="p-2"))
        assert state.status.value == "completed", state.error
        contents = [m["content"] for m in server.requests[1]["messages"][-4:]]
    assert contents == ["A", "B", "C", "D"]
    assert running["max"] == 2


def test_one_failing_call_still_commits_the_others(store: BaseCheckpointer) -> None:
    """A tool that raises (not a ToolError) fails the node; the calls that returned are
    committed, so the retry replays them and runs only the failed one again."""
    ran: list[str] = []
    broken = {"B": True}

    @tool
    def lookup(order_id: str) -> str:
        """Look up an order."""
        ran.append(order_id)
        if broken.get(order_id):
            broken[order_id] = False
            raise RuntimeError("database hiccup")
        return order_id

    with OpenAICompatibleTestServer([THREE, "Done."]) as server:
        flow = Flow("parallel-retry")
        flow.add(Agent("support", _openai(server), "Answer.", tools=[lookup]), retries=1,
                 backoff=0.0)
        flow.edge("support", END)
        state = flow.run({"input": "?"}, checkpointer=store, run_id="p-3")
        assert state.status.value == "completed", state.error
        assert server.request_count == 2  # the model's response was replayed on the retry
        assert json.loads(json.dumps(server.requests[1]["messages"][-3:]))[1]["content"] == "B"
    assert sorted(ran) == ["A", "B", "B", "C"]
