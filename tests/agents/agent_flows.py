"""Flows the agent crash and approval tests run in child processes (see agent_child.py).

The model is an ``OpenAIModel`` (or, in ``support_claude``, an ``AnthropicModel``)
configured only from the environment, as a deployed agent would be:
``PURPOSE_AGENT_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point it at the test server, the key
comes from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``. Tools append one line per real call to ``$EFFECTS_FILE``.
``KILL_AT=before:<tool>`` / ``after:<tool>`` makes the child SIGKILL itself inside that
tool, before or after its side effect; ``HANG_AT=after:<tool>`` makes that tool block
after its effect (on stdin, which the test never writes) until the test kills the child.
``HANG_AT=flow_budget`` blocks the same way at the flow budget's check that will refuse
the next model call (after saying so on stderr), before the pause is committed.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, AnthropicModel, Budget, OpenAIModel, Price, tool
from purpose_agent.agents import agent as agent_module
from purpose_agent.agents.budget import within_budget


def _effect(tool_name: str, line: str) -> None:
    if os.environ.get("KILL_AT") == f"before:{tool_name}":
        os.kill(os.getpid(), signal.SIGKILL)
    with open(os.environ["EFFECTS_FILE"], "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("KILL_AT") == f"after:{tool_name}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("HANG_AT") == f"after:{tool_name}":
        sys.stdin.readline()


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order's status.

    Args:
        order_id: The order id, e.g. "A1".
    """
    _effect("lookup_order", f"lookup {order_id}")
    return {"order_id": order_id, "status": "shipped"}


@tool(requires_approval=True)
def refund(order_id: str, amount: float) -> str:
    """Refund part of an order.

    Args:
        order_id: The order to refund.
        amount: How much, in euros.
    """
    _effect("refund", f"refund {order_id} {amount}")
    return f"refunded {amount} on {order_id}"


@tool(at_most_once=True)
def charge(order_id: str, amount: float) -> str:
    """Charge a customer's card (never twice)."""
    _effect("charge", f"charge {order_id} {amount}")
    return f"charged {amount}"


# Prices that make costs easy to check by hand: $1 / $0.10 / $4 per million tokens.
PRICES = Price(input_per_mtok=1.0, output_per_mtok=4.0, cached_input_per_mtok=0.1)


def _model() -> OpenAIModel:
    return OpenAIModel("test-model", timeout=10.0, max_retries=1, prices=PRICES)


def _support(name: str, model: OpenAIModel | AnthropicModel | None = None,
             **options: Any) -> Flow:
    flow = Flow(name, purpose="answer a support ticket")
    flow.add(Agent("support", model or _model(), "You are a support agent.",
                   tools=[lookup_order, refund, charge], **options))
    flow.edge("support", END)
    return flow


# Built when a child asks for one: importing the anthropic SDK (for support_claude) costs
# a child seconds on a loaded machine.
FLOWS: dict[str, Callable[[], Flow]] = {
    "support": lambda: _support("support"),
    # The same agent on Claude: ANTHROPIC_BASE_URL points it at the Anthropic-wire test
    # server, the key comes from ANTHROPIC_API_KEY.
    "support_claude": lambda: _support("support_claude", AnthropicModel(
        "claude-test", timeout=10.0, max_retries=1, prices=PRICES)),
    # Allowed one model call per execution before a person raises it.
    "support_budget": lambda: _support("support_budget", budget=Budget(max_model_calls=1)),
    # Two agents sharing a flow budget of two model calls.
    "support_flow_budget": lambda: _flow_budget(),
    # Running a response's tool calls together, two at a time.
    "support_parallel": lambda: _support("support_parallel", max_concurrent_tools=2),
    # With the tools of a real MCP server (tests/agents/mcp_server.py, over stdio).
    "support_mcp": lambda: _mcp_support(),
    # Streaming its answers, token by token, to stderr.
    "support_stream": lambda: _support("support_stream", on_token=_to_stderr),
    # The same on Claude, through the anthropic SDK's stream.
    "support_claude_stream": lambda: _support("support_claude_stream", AnthropicModel(
        "claude-test", timeout=10.0, max_retries=1, prices=PRICES), on_token=_to_stderr),
}


def _flow_budget() -> Flow:
    """Triage (one model call), then the support agent, within two model calls a run."""
    if os.environ.get("HANG_AT") == "flow_budget":
        agent_module.within_budget = _hang_at_refusal  # type: ignore[assignment]
    flow = Flow("support_flow_budget", purpose="answer a support ticket",
                budget=Budget(max_model_calls=2))
    flow.add(Agent("triage", _model(), "Classify the ticket.", messages_key="triage_log"))
    flow.add(Agent("support", _model(), "You are a support agent.", tools=[lookup_order]))
    flow.edge("triage", "support").edge("support", END)
    return flow


def _hang_at_refusal(ctx: Any, budget: Budget, spent: Any, **options: Any) -> Budget:
    """The flow budget's check, held where it is about to refuse a call: every call
    before was committed, the pause that follows is not."""
    if options.get("flow") and (reached := budget.reached(spent)) is not None:
        sys.stderr.write(f"refusing at the flow budget: {reached}\n")
        sys.stderr.flush()
        sys.stdin.readline()
    return within_budget(ctx, budget, spent, **options)


def _to_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _mcp_support() -> Flow:
    from purpose_agent.agents import mcp_tools

    server = mcp_tools(f"{sys.executable} {os.path.dirname(__file__)}/mcp_server.py",
                       env={name: os.environ.get(name, "")
                            for name in ("EFFECTS_FILE", "HANG_AT")},
                       at_most_once=["charge"])
    flow = Flow("support_mcp", purpose="answer a support ticket")
    flow.add(Agent("support", _model(), "You are a support agent.", tools=[server]))
    flow.edge("support", END)
    return flow
