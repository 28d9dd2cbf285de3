"""Flows the agent crash and approval tests run in child processes (see agent_child.py).

The model is an ``OpenAIModel`` (or, in ``support_claude``, an ``AnthropicModel``)
configured only from the environment, as a deployed agent would be:
``PURPOSE_AGENT_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point it at the test server, the key
comes from ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``. Tools append one line per real call to ``$EFFECTS_FILE``.
``KILL_AT=before:<tool>`` / ``after:<tool>`` makes the child SIGKILL itself inside that
tool, before or after its side effect.
"""

from __future__ import annotations

import os
import signal

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, AnthropicModel, Budget, OpenAIModel, Price, tool


def _effect(tool_name: str, line: str) -> None:
    if os.environ.get("KILL_AT") == f"before:{tool_name}":
        os.kill(os.getpid(), signal.SIGKILL)
    with open(os.environ["EFFECTS_FILE"], "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("KILL_AT") == f"after:{tool_name}":
        os.kill(os.getpid(), signal.SIGKILL)


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


support = Flow("support", purpose="answer a support ticket")
support.add(Agent("support", _model(), "You are a support agent.",
                  tools=[lookup_order, refund, charge]))
support.edge("support", END)

# The same agent on Claude: ANTHROPIC_BASE_URL points it at the Anthropic-wire test
# server, the key comes from ANTHROPIC_API_KEY.
claude = Flow("support_claude", purpose="answer a support ticket")
claude.add(Agent("support", AnthropicModel("claude-test", timeout=10.0, max_retries=1,
                                           prices=PRICES),
                 "You are a support agent.", tools=[lookup_order, refund, charge]))
claude.edge("support", END)

# The same agent allowed one model call per execution before a person raises it.
budgeted = Flow("support_budget", purpose="answer a support ticket")
budgeted.add(Agent("support", _model(), "You are a support agent.",
                   tools=[lookup_order, refund, charge], budget=Budget(max_model_calls=1)))
budgeted.edge("support", END)

FLOWS = {"support": support, "support_claude": claude, "support_budget": budgeted}
