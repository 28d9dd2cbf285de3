"""A support agent that looks orders up and proposes refunds a person approves.

It runs in an ``async def`` flow (``await flow.arun``), streams its answer as the model
writes it, runs the model's tool calls of one turn together, and stops at a budget for
the whole run (a person may raise it). ``--mcp "python -m some_server"`` adds the tools
of an MCP server, ``--max-calls N`` sets the budget (10); ``--claude`` uses Claude through the anthropic SDK instead
(``ANTHROPIC_API_KEY``, ``PURPOSE_AGENT_MODEL`` e.g. ``claude-sonnet-4-5``).

Against any OpenAI-compatible server (llama.cpp, vLLM, Ollama, LM Studio, OpenAI):

    PURPOSE_AGENT_BASE_URL=http://127.0.0.1:8080/v1 PURPOSE_AGENT_MODEL=qwen2.5-7b-instruct \
        python examples/support_agent.py "My order A-17 arrived broken, I want my money back"

Without a server, a scripted local one (purpose_agent.agents.testing) plays the model:

    python examples/support_agent.py --offline "My order A-17 arrived broken"
    python examples/support_agent.py --offline --claude "My order A-17 arrived broken"

The key, if the server needs one, comes from OPENAI_API_KEY and is never journaled.
When the model proposes a refund the run pauses and asks on stdin: ``y`` approves,
a number approves that amount instead, anything else rejects; at the budget, a number
raises it to that many model calls. Every model call and tool
call is journaled in $PURPOSE_AGENT_DB (default ./.purpose_agent/support.db).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from contextlib import ExitStack
from typing import Any

from purpose_agent import END, Flow, RunStatus, open_checkpointer
from purpose_agent.agents import (
    Agent,
    AnthropicModel,
    Budget,
    OpenAIModel,
    ToolError,
    mcp_tools,
    tool,
)
from purpose_agent.agents.testing import AnthropicTestServer, OpenAICompatibleTestServer, tool_call
from purpose_agent.runtime.usage import usage_text, usage_totals

ORDERS = {"A-17": {"item": "espresso machine", "paid": 42.0, "status": "delivered"}}


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order by id.

    Args:
        order_id: The order id, e.g. "A-17".
    """
    if order_id not in ORDERS:
        raise ToolError(f"no order {order_id!r}")
    return {"order_id": order_id, **ORDERS[order_id]}


@tool
async def check_warranty(order_id: str) -> dict:
    """Whether an order is still under warranty (an async tool: awaited on the loop).

    Args:
        order_id: The order id, e.g. "A-17".
    """
    await asyncio.sleep(0)
    return {"order_id": order_id, "under_warranty": order_id in ORDERS}


@tool(requires_approval=True, at_most_once=True)
def refund(order_id: str, amount: float) -> str:
    """Refund (part of) an order to the customer's card. A person approves each refund.

    Args:
        order_id: The order to refund.
        amount: How much to refund, at most what was paid.
    """
    print(f"  refunding {amount} on {order_id}")
    return f"refunded {amount} on {order_id}"


INSTRUCTIONS = (
    "You are a support agent for an online shop. Look the order up before acting. "
    "Offer a refund only for damaged or missing items, never above what was paid. "
    "Answer the customer in two sentences."
)

OFFLINE_SCRIPT = [
    {"tool_calls": [tool_call("lookup_order", order_id="A-17"),      # two calls, run together
                    tool_call("check_warranty", order_id="A-17")]},
    {"tool_calls": [tool_call("refund", order_id="A-17", amount=42.0)]},
    "Sorry about the broken espresso machine. I have handled your refund request for A-17.",
]


def build_flow(model: OpenAIModel | AnthropicModel, extra_tools: list[Any],
               max_calls: int = 10) -> Flow:
    # At most max_calls model calls for the whole run; then it pauses for a person.
    flow = Flow("support", purpose="Answer a support ticket, refunds approved by a person",
                budget=Budget(max_model_calls=max_calls))
    flow.add(Agent("support", model, INSTRUCTIONS,
                   tools=[lookup_order, check_warranty, refund, *extra_tools],
                   input_key="ticket", output_key="reply",
                   on_token=lambda text: print(text, end="", flush=True)))
    flow.edge("support", END)
    return flow


def ask(payload: dict) -> object:
    if "budget_reached" in payload:
        line = input(f"{payload['message']}\nRaise to how many model calls? ").strip()
        return {"budget": {"max_model_calls": int(line)}} if line.isdigit() else {"stop": True}
    args = payload["args"]
    line = input(f"Approve {payload['tool']} {args}? [y / amount / n] ").strip().lower()
    if line in ("y", "yes"):
        return {"approve": True}
    try:
        return {"approve": True, "args": {**args, "amount": float(line)}}
    except ValueError:
        print("  declined")
        return {"approve": False, "reason": "a person declined the refund"}


async def main(argv: list[str]) -> int:
    offline, claude = "--offline" in argv, "--claude" in argv
    words = [a for a in argv if a not in ("--offline", "--claude")]
    extra_tools: list[Any] = []
    if "--mcp" in words:  # --mcp "python -m some_server": that server's tools too
        at = words.index("--mcp")
        extra_tools.append(mcp_tools(words[at + 1]))
        del words[at:at + 2]
    max_calls = 10
    if "--max-calls" in words:  # the run's budget of model calls
        at = words.index("--max-calls")
        max_calls = int(words[at + 1])
        del words[at:at + 2]
    ticket = " ".join(words) or "My order A-17 arrived broken, I want my money back"
    with ExitStack() as stack:
        base_url = None
        server = AnthropicTestServer if claude else OpenAICompatibleTestServer
        if offline:
            base_url = stack.enter_context(server(OFFLINE_SCRIPT)).url
        name = os.environ.get("PURPOSE_AGENT_MODEL")
        try:
            model: OpenAIModel | AnthropicModel = (
                AnthropicModel(name or "claude-sonnet-4-5", base_url=base_url,
                               timeout=120.0, max_retries=3) if claude else
                OpenAIModel(name or "gpt-4o-mini", base_url=base_url, timeout=120.0,
                            max_retries=3))
        except ValueError as exc:
            print(f"{exc}; or run with --offline", file=sys.stderr)
            return 2
        flow = build_flow(model, extra_tools, max_calls)
        store = open_checkpointer(os.environ.get("PURPOSE_AGENT_DB", ".purpose_agent/support.db"))
        run_id = f"support-{uuid.uuid4().hex[:8]}"
        state = await flow.arun({"ticket": ticket}, checkpointer=store, run_id=run_id)
        while state.status is RunStatus.PAUSED and state.pending is not None:
            payload = state.pending["payload"]
            if state.pending["kind"] != "interrupt" or not (
                    "tool" in payload or "budget_reached" in payload):
                print(f"paused: {state.pending}; resume {run_id} once checked")
                return 1
            answer = await asyncio.to_thread(ask, payload)
            state = await flow.aresume(run_id, checkpointer=store, answer=answer)
    print()  # after the streamed answer
    if state.status is not RunStatus.COMPLETED:
        print(f"{state.status.value}: {state.error}")
        return 1
    usage = usage_totals(store.list_events(run_id))  # what `purpose-agent show` prints
    print(f"[{run_id}: {usage_text(usage) if usage else 'no model calls'}]")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
