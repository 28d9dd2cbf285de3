"""MCP tools: a real MCP server process (tests/agents/mcp_server.py, the official mcp
package), over stdio and over streamable HTTP; each call a durable tool step, with
at_most_once and requires_approval per tool name."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import API_KEY, Child, result_of, wait_for

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, MCPTools, OpenAIModel, ToolDefinitionError, mcp_tools
from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call
from purpose_agent.runtime.checkpoint import BaseCheckpointer

SERVER = Path(__file__).parent / "mcp_server.py"


@pytest.fixture
def effects(tmp_path: Path) -> Path:
    return tmp_path / "effects.log"


@pytest.fixture
def stdio_tools(effects: Path) -> Iterator[MCPTools]:
    tools = mcp_tools(f"{sys.executable} {SERVER}", env={"EFFECTS_FILE": str(effects)},
                      requires_approval=["charge"])
    yield tools
    tools.close()


def _flow(server: OpenAICompatibleTestServer, tools: MCPTools) -> Flow:
    flow = Flow("mcp")
    flow.add(Agent("support", OpenAIModel("test-model", base_url=server.url,
                                          api_key=API_KEY, max_retries=0),
                   "Answer.", tools=[tools]))
    flow.edge("support", END)
    return flow


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_stdio_server_tools_are_durable_steps_and_errors_go_to_the_model(
        server: OpenAICompatibleTestServer, store: BaseCheckpointer, effects: Path,
        stdio_tools: MCPTools, driver: str) -> None:
    assert sorted(t.name for t in stdio_tools) == ["charge", "fail", "lookup_order"]
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1", id="c-1"),
                               tool_call("fail", reason="test", id="c-2"),
                               tool_call("lookup_order", order_idx="A1", id="c-3")]},
               "A1 has shipped.")
    flow = _flow(server, stdio_tools)
    data = {"input": "Where is A1?"}
    state = (flow.run(data, checkpointer=store, run_id="m-1") if driver == "sync"
             else asyncio.run(flow.arun(data, checkpointer=store, run_id="m-1")))
    assert state.status.value == "completed", state.error

    first = server.requests[0]
    specs = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert specs["lookup_order"]["description"] == "Look up an order's status."
    assert specs["lookup_order"]["parameters"]["required"] == ["order_id"]
    results = server.requests[1]["messages"][-3:]
    assert json.loads(results[0]["content"]) == {"order_id": "A1", "status": "shipped"}
    assert json.loads(results[1]["content"]) == {"error": "Error executing tool fail"}
    assert "missing order_id" in json.loads(results[2]["content"])["error"]
    assert _lines(effects) == ["mcp lookup A1"]  # the bad call never reached the server
    steps = [s for s in store.load_steps("m-1", 1) if s.name.startswith("tool:")]
    assert [(s.name, s.status) for s in steps] == [("tool:lookup_order", "done"),
                                                   ("tool:fail", "done")]


def test_requires_approval_per_tool_name(server: OpenAICompatibleTestServer,
                                         store: BaseCheckpointer, effects: Path,
                                         stdio_tools: MCPTools) -> None:
    server.add({"tool_calls": [tool_call("charge", order_id="C3", amount=25)]}, "Charged.")
    flow = _flow(server, stdio_tools)
    paused = flow.run({"input": "Charge C3"}, checkpointer=store, run_id="m-2")
    assert paused.status.value == "paused" and paused.pending is not None
    assert paused.pending["payload"]["tool"] == "charge"
    assert _lines(effects) == []
    done = flow.resume("m-2", checkpointer=store, answer={"approve": True})
    assert done.status.value == "completed"
    assert _lines(effects) == ["mcp charge C3 25.0"]
    assert server.requests[1]["messages"][-1]["content"] == json.dumps(
        {"result": "charged 25.0 on C3"})


def test_streamable_http_server(server: OpenAICompatibleTestServer, store: BaseCheckpointer,
                                effects: Path) -> None:
    with socket.socket() as probe:  # a free port for the server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(SERVER), "--http", str(port)],
                               env={"EFFECTS_FILE": str(effects), "PATH": ""},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _accepts(port) or process.poll() is not None,
                 what="the MCP server to listen")
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        tools = mcp_tools(f"http://127.0.0.1:{port}/mcp", include=["lookup_order"],
                          prefix="orders_")
        try:
            server.add({"tool_calls": [tool_call("orders_lookup_order", order_id="B2")]},
                       "B2 has shipped.")
            state = _flow(server, tools).run({"input": "B2?"}, checkpointer=store,
                                             run_id="m-3")
        finally:
            tools.close()
    finally:
        process.kill()
        process.communicate()
    assert state.status.value == "completed", state.error
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == [
        "orders_lookup_order"]
    assert _lines(effects) == ["mcp lookup B2"]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_unknown_tool_names_are_refused_clearly(effects: Path) -> None:
    with pytest.raises(ToolDefinitionError, match=r"at_most_once names \['refund'\].*"
                                                  r"its tools are \['charge', 'fail'"):
        mcp_tools(f"{sys.executable} {SERVER}", env={"EFFECTS_FILE": str(effects)},
                  at_most_once=["refund"])


def test_kill_inside_an_mcp_tool_call_never_calls_it_twice(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    """The lookup is committed; the charge (at most once) reaches the server, which
    makes its effect and hangs; the agent's process is killed there. Resumed: the
    lookup is replayed, the charge is in doubt and a person supplies its result."""
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1")]},
               {"tool_calls": [tool_call("charge", order_id="C3", amount=25)]}, "Done.")
    running = child.start("run", "t-m", {"input": "A1, then charge C3"}, flow="support_mcp",
                          hang_at="after:charge")
    try:
        wait_for(lambda: "mcp charge C3 25.0" in child.effects_lines(),
                 what="the charge to reach the MCP server")
    finally:
        running.kill()
        running.communicate()
    assert running.returncode == -signal.SIGKILL

    paused = result_of(child("resume", "t-m", flow="support_mcp"))
    assert paused["status"] == "paused" and paused["pending"]["name"] == "tool:charge"
    state = result_of(child("resume", "t-m", {"answer": "charged 25.0"}, flow="support_mcp"))
    assert state["status"] == "completed" and state["data"]["support"] == "Done."
    assert child.effects_lines() == ["mcp lookup A1", "mcp charge C3 25.0"]
    assert server.request_count == 3
