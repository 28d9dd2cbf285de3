"""Durable waits: a retry policy that honours Retry-After, an idempotency key, a timer,
and a message from outside the process.

    python examples/durable_waits.py start    # runs until it waits for the confirmation
    purpose-agent send invoice-A-17 confirmation '{"ok": true}' \\
        --flow examples/durable_waits.py:flow --db .purpose_agent/invoices.db
"""

from __future__ import annotations

import os
import sys

from purpose_agent import (
    END,
    Flow,
    RetryPolicy,
    RunStateError,
    WaitTimeout,
    open_checkpointer,
    step,
)
from purpose_agent.flow import current_context

flow = Flow("invoice", purpose="Send an invoice once the customer confirms", inline_wait=5.0)


class RateLimited(Exception):
    """What an HTTP client raises on a 429: ``retry_after`` from the Retry-After header."""

    retry_after = 0.2


_calls = {"create_invoice": 0}


@step(retry=RetryPolicy(max_attempts=3, initial=0.5, non_retryable=(ValueError,)))
def create_invoice(order_id: str) -> dict:
    ctx = current_context()
    key = ctx.idempotency_key() if ctx else None  # the same on every retry and resume
    _calls["create_invoice"] += 1
    if _calls["create_invoice"] == 1:
        print("  429 Too Many Requests: retrying after 0.2 s")
        raise RateLimited()
    print(f"  invoice created with Idempotency-Key {key}")
    return {"invoice": f"inv-{order_id}"}


@flow.node
def draft(ctx):
    return create_invoice(ctx.data["order_id"])


@flow.node
def cool_off(ctx):
    ctx.sleep(1.0)  # journaled; within inline_wait, so waited out here
    return {}


@flow.node
def confirm(ctx):
    try:
        # No process waits for this: the run parks until the message (or the deadline).
        answer = ctx.wait_for("confirmation", timeout=7 * 86400)
    except WaitTimeout:
        return {"confirmed": False}
    return {"confirmed": answer.get("ok") is True}


@flow.node
def send_invoice(ctx):
    if ctx.data["confirmed"]:
        print(f"  sending {ctx.data['invoice']}")
    return {"sent": ctx.data["confirmed"]}


flow.edge("draft", "cool_off").edge("cool_off", "confirm").edge("confirm", "send_invoice")
flow.edge("send_invoice", END)

if __name__ == "__main__":
    store = open_checkpointer(os.environ.get("PURPOSE_AGENT_DB", ".purpose_agent/invoices.db"))
    try:
        state = flow.run({"order_id": "A-17"}, checkpointer=store, run_id="invoice-A-17")
    except RunStateError as exc:
        sys.exit(f"start: {exc}")
    print(state.status, state.pending or state.data)
