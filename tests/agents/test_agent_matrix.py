"""One agent using every Agent v2 feature together — streaming, parallel tool calls, a
budget (the agent's or the flow's), structured output, usage and cost — on every store (in memory, JSONL,
SQLite, PostgreSQL), under ``flow.run`` and ``await flow.arun``, on both providers'
wire formats (real local servers, the official SDKs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import API_KEY, kinds
from pydantic import BaseModel

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, AnthropicModel, Budget, OpenAIModel, Price, tool
from purpose_agent.agents.testing import (
    AnthropicTestServer,
    OpenAICompatibleTestServer,
    tool_call,
)
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer
from purpose_agent.runtime.usage import usage_totals

PRICES = Price(input_per_mtok=1.0, output_per_mtok=4.0)
looked_up: list[str] = []


class Status(BaseModel):
    orders: list[str]
    shipped: bool


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order."""
    looked_up.append(order_id)
    return {"order_id": order_id, "status": "shipped"}


@tool
async def check_warranty(order_id: str) -> str:
    """Check an order's warranty (an async tool)."""
    looked_up.append(f"warranty {order_id}")
    return "covered"


@pytest.fixture(params=["memory", "jsonl", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    urls = {"memory": "memory://", "jsonl": f"jsonl:///{tmp_path}/runs",
            "sqlite": f"sqlite:///{tmp_path}/runs.db"}
    url = urls.get(request.param) or request.getfixturevalue("pg_url")
    with open_checkpointer(url) as cp:
        yield cp


@pytest.mark.parametrize("scope", ["flow", "agent"])
@pytest.mark.parametrize("driver", ["sync", "async"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_feature_on_every_store(any_store: BaseCheckpointer, driver: str,
                                      provider: str, scope: str) -> None:
    looked_up.clear()
    usage = {"input_tokens": 100, "output_tokens": 10}
    answer = json.dumps({"orders": ["A1"], "shipped": True})
    script: list[Any] = [
        {"content": "Checking.", "usage": usage,
         "tool_calls": [tool_call("lookup_order", order_id="A1"),
                        tool_call("check_warranty", order_id="A1")]},
        {"content": answer, "usage": usage}]
    server_type = OpenAICompatibleTestServer if provider == "openai" else AnthropicTestServer
    tokens: list[str] = []
    with server_type(script, api_key=API_KEY) as server:
        model = (OpenAIModel("m", base_url=server.url, api_key=API_KEY, max_retries=0,
                             prices=PRICES) if provider == "openai"
                 else AnthropicModel("m", base_url=server.url, api_key=API_KEY,
                                     max_retries=0, prices=PRICES))
        budget = Budget(max_model_calls=1)
        flow = Flow("matrix", budget=budget if scope == "flow" else None)
        flow.add(Agent("support", model, "Help.", tools=[lookup_order, check_warranty],
                       output_type=Status, on_token=tokens.append, max_concurrent_tools=2,
                       budget=budget if scope == "agent" else None))
        flow.edge("support", END)

        def go(method: str, *args: Any, **kwargs: Any) -> Any:
            if driver == "sync":
                return getattr(flow, method)(*args, checkpointer=any_store, **kwargs)
            return asyncio.run(getattr(flow, f"a{method}")(*args, checkpointer=any_store,
                                                            **kwargs))

        paused = go("run", {"input": "Is A1 shipped?"}, run_id="m-1")
        assert paused.status.value == "paused", paused.error
        assert paused.pending is not None
        payload = paused.pending["payload"]
        assert (payload["budget_reached"], payload["scope"]) == ("1 of 1 model calls", scope)
        assert sorted(looked_up) == ["A1", "warranty A1"] and server.request_count == 1

        done = go("resume", "m-1", answer={"budget": {"max_model_calls": 2}})
        assert done.status.value == "completed", done.error
        assert server.request_count == 2
        assert all(request["stream"] is True for request in server.requests)

    assert done.data["support"] == {"orders": ["A1"], "shipped": True}
    assert "".join(tokens) == "Checking." + answer
    assert sorted(looked_up) == ["A1", "warranty A1"]  # replayed on resume, not re-run
    totals = usage_totals(any_store.list_events("m-1"))
    assert totals is not None
    assert (totals["model_calls"], totals["total_tokens"]) == (2, 220)
    assert totals["cost_usd"] == pytest.approx(2 * (100 * 1.0 + 10 * 4.0) / 1e6)
    assert len(kinds(any_store, "m-1", "model.response")) == 2
