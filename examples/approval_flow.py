"""A refund that needs a person's approval, and survives a crash.

    python examples/approval_flow.py start          # runs until it asks for approval
    CRASH=1 python examples/approval_flow.py approve  # approves, then dies mid-refund
    python examples/approval_flow.py resume         # finishes: nothing is repeated

The run is journaled in $PURPOSE_AGENT_DB, else .purpose_agent/refunds.db.
"""

from __future__ import annotations

import os
import signal
import sys

from purpose_agent import END, Flow, RunNotFound, RunStateError, open_checkpointer, step

flow = Flow("refund", purpose="Refund an order once a person approves it")


def fetch_order(order_id: str) -> dict:
    print(f"  fetching order {order_id}")
    return {"id": order_id, "amount": 42.0}


@step(at_most_once=True)  # money moves: never re-run automatically after a crash
def issue_refund(order_id: str, amount: float) -> str:
    print(f"  refunding {amount} for {order_id}")
    return f"refund-{order_id}"


@flow.node
def look_up(ctx):
    return {"order": ctx.step("fetch_order", fetch_order, ctx.data["order_id"])}


@flow.node
def approve(ctx):
    answer = ctx.interrupt({"question": f"Refund {ctx.data['order']['amount']}?"})
    return {"approved": answer is True}


@flow.node
def refund(ctx):
    receipt = issue_refund(ctx.data["order"]["id"], ctx.data["order"]["amount"])
    if os.environ.get("CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)  # die after the refund, before the commit
    return {"receipt": receipt}


flow.edge("look_up", "approve")
flow.route("approve", lambda data: "refund" if data["approved"] else END)
flow.edge("refund", END)

if __name__ == "__main__":
    # $PURPOSE_AGENT_DB, else a file under .purpose_agent/ (which git ignores)
    store = open_checkpointer(os.environ.get("PURPOSE_AGENT_DB", ".purpose_agent/refunds.db"))
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    try:
        if command == "start":
            state = flow.run({"order_id": "A-17"}, checkpointer=store, run_id="refund-A-17")
        elif command == "approve":
            state = flow.resume("refund-A-17", checkpointer=store, answer=True)
        else:
            state = flow.resume("refund-A-17", checkpointer=store)
    except (RunStateError, RunNotFound) as exc:  # e.g. started twice, or resumed when done
        sys.exit(f"{command}: {exc}")
    state.raise_for_status()  # a FAILED run raises RunFailed, with the node's traceback
    print(state.status, state.pending or state.data)
