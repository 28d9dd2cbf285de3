"""Usage accounting: every model call's tokens (input, cached, output) and cost are
journaled with its response and summed per run by `purpose-agent show` and the
transcript; a resumed run never counts a replayed call twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from agent_helpers import API_KEY, Child, kinds, result_of

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, OpenAIModel, Price, Usage, tool
from purpose_agent.agents.testing import OpenAICompatibleTestServer, ScriptedModel, tool_call
from purpose_agent.runtime.transcript import render_transcript
from purpose_agent.runtime.usage import usage_totals

SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))

# Two calls: 1,000 in (600 cached) + 50 out, then 2,000 in (1,500 cached) + 80 out.
FIRST = {"input_tokens": 1000, "output_tokens": 50, "cached_input_tokens": 600}
SECOND = {"input_tokens": 2000, "output_tokens": 80, "cached_input_tokens": 1500}
# At $1 in, $0.10 cached in, $4 out per million tokens (agent_flows.PRICES):
COST_FIRST = (400 * 1.0 + 600 * 0.1 + 50 * 4.0) / 1e6
COST_SECOND = (500 * 1.0 + 1500 * 0.1 + 80 * 4.0) / 1e6


@tool
def lookup(order_id: str) -> str:
    """Look up an order."""
    return f"{order_id}: shipped"


def _cli(db: Path | str, *args: str) -> str:
    assert SCRIPT, "the purpose-agent script is not installed"
    proc = subprocess.run([SCRIPT, *args, "--db", str(db)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_price_cost_counts_cached_and_cache_written_tokens_at_their_rates() -> None:
    price = Price(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3,
                  cache_write_per_mtok=3.75)
    usage = Usage(input_tokens=10_000, output_tokens=1_000, cached_input_tokens=6_000,
                  cache_write_tokens=2_000)
    assert price.cost(usage) == pytest.approx(
        (2_000 * 3.0 + 6_000 * 0.3 + 2_000 * 3.75 + 1_000 * 15.0) / 1e6)
    # Unset cache rates are the input rate.
    assert Price(2.0, 8.0).cost(usage) == pytest.approx((10_000 * 2.0 + 1_000 * 8.0) / 1e6)
    with pytest.raises(ValueError, match="output_per_mtok"):
        Price(1.0, -1.0)


def test_usage_and_cost_of_every_call_are_journaled_and_shown(
        server: OpenAICompatibleTestServer, tmp_path: Path) -> None:
    server.add({"tool_calls": [tool_call("lookup", order_id="A1")], "usage": FIRST},
               {"content": "A1 has shipped.", "usage": SECOND})
    model = OpenAIModel("test-model", base_url=server.url, api_key=API_KEY, max_retries=0,
                        prices=Price(input_per_mtok=1.0, output_per_mtok=4.0,
                                     cached_input_per_mtok=0.1))
    flow = Flow("orders")
    flow.add(Agent("orders", model, "Help.", tools=[lookup]))
    flow.edge("orders", END)
    db = tmp_path / "runs.db"
    store = SQLiteCheckpointer(str(db))
    state = flow.run({"input": "A1?"}, checkpointer=store, run_id="u-1")
    assert state.status.value == "completed"

    first, second = kinds(store, "u-1", "model.response")
    assert first["usage"] == {**FIRST, "cache_write_tokens": 0, "total_tokens": 1050}
    assert first["cost_usd"] == pytest.approx(COST_FIRST)
    assert second["cost_usd"] == pytest.approx(COST_SECOND)

    totals = usage_totals(store.list_events("u-1"))
    assert totals is not None
    assert {k: v for k, v in totals.items() if k != "cost_usd"} == {
        "model_calls": 2, "input_tokens": 3000, "output_tokens": 130,
        "cached_input_tokens": 2100, "cache_write_tokens": 0, "total_tokens": 3130,
        "priced_calls": 2}
    assert totals["cost_usd"] == pytest.approx(COST_FIRST + COST_SECOND)

    line = "2 model calls, 3,130 tokens (3,000 in of which 2,100 cached, 130 out), $0.00163"
    assert f"model usage   {line}" in _cli(db, "show", "u-1")
    shown = json.loads(_cli(db, "show", "u-1", "--json"))
    assert shown["usage"]["total_tokens"] == 3130
    assert shown["usage"]["cost_usd"] == pytest.approx(COST_FIRST + COST_SECOND)
    transcript = _cli(db, "transcript", "u-1")
    assert transcript.rstrip().splitlines()[-1] == f"usage: {line}"
    assert "model test-model ← A1?" in transcript
    assert "model test-model → calls lookup [1050 tokens, $0.00066]" in transcript
    assert "model test-model → A1 has shipped. [2080 tokens, $0.00097]" in transcript


def test_a_model_without_prices_has_usage_but_no_cost(tmp_path: Path) -> None:
    model = ScriptedModel([{"content": "hi", "usage": {"input_tokens": 7,
                                                       "output_tokens": 3}}])
    flow = Flow("plain")
    flow.add(Agent("plain", model))
    flow.edge("plain", END)
    store = SQLiteCheckpointer(str(tmp_path / "runs.db"))
    flow.run({"input": "hello"}, checkpointer=store, run_id="p-1")
    events = store.list_events("p-1")
    totals = usage_totals(events)
    assert totals is not None and totals["cost_usd"] is None and totals["total_tokens"] == 10
    assert render_transcript(events).splitlines()[-1] == (
        "usage: 1 model call, 10 tokens (7 in, 3 out)")


def test_a_run_without_model_calls_shows_no_usage(tmp_path: Path) -> None:
    flow = Flow("noop")
    flow.node(lambda ctx: {"x": 1}, name="noop")
    flow.edge("noop", END)
    db = tmp_path / "runs.db"
    flow.run({}, checkpointer=SQLiteCheckpointer(str(db)), run_id="n-1")
    assert "model usage" not in _cli(db, "show", "n-1")
    assert json.loads(_cli(db, "show", "n-1", "--json"))["usage"] is None
    assert "usage:" not in _cli(db, "transcript", "n-1")


def test_kill_after_a_committed_response_then_resume_counts_every_call_once(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1")], "usage": FIRST},
               {"content": "Order A1 has shipped.", "usage": SECOND})
    killed = child("run", "c-1", {"input": "Where is A1?"}, kill_at="before:lookup_order")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after_crash = usage_totals(child.store().list_events("c-1"))
    assert after_crash is not None and after_crash["model_calls"] == 1
    assert after_crash["total_tokens"] == 1050

    # The resuming process replays call 1 from the journal: it neither sends nor counts
    # it again.
    state = result_of(child("resume", "c-1"))
    assert state["status"] == "completed"
    assert server.request_count == 2
    totals = usage_totals(child.store().list_events("c-1"))
    assert totals is not None
    assert totals["model_calls"] == 2
    assert (totals["input_tokens"], totals["cached_input_tokens"],
            totals["output_tokens"]) == (3000, 2100, 130)
    assert totals["cost_usd"] == pytest.approx(COST_FIRST + COST_SECOND)
    shown = json.loads(_cli(child.db, "show", "c-1", "--json"))
    assert shown["usage"] == totals
