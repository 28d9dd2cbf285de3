"""Flows the inspector tests run: a question for a person, an agent whose model answers
with markup, a node that waits for the test, and a step that kills its process."""

from __future__ import annotations

import os
import signal
import threading

from purpose_agent import END, Flow, step
from purpose_agent.agents import Agent
from purpose_agent.agents.testing import ScriptedModel

# Text that would run script if a page used it as markup.
XSS = '<script>window.__xss = 1; alert("x")</script>"><img src=x onerror="window.__xss=2">'

approval = Flow("ui-approval", purpose="Draft a reply, ask a person, send it")


@approval.node
def draft(ctx):
    return {"draft": ctx.step("write_draft", lambda: f"Dear customer {XSS}")}


@approval.node
def approve(ctx):
    answer = ctx.interrupt({"question": f"Send this reply? {XSS}", "draft": ctx.data["draft"]})
    return {"approved": answer}


@approval.node
def send(ctx):
    sent = ctx.step("send_reply", lambda: "sent" if ctx.data["approved"] is True else "kept")
    return {"outcome": sent}


approval.edge("draft", "approve")
approval.edge("approve", "send")
approval.edge("send", END)


def agent_flow(reply: str) -> Flow:
    """A one-agent flow whose scripted model answers ``reply`` with token usage."""
    flow = Flow("ui-agent", purpose="Ask a model")
    model = ScriptedModel([{"content": reply, "usage": {"input_tokens": 120,
                                                         "output_tokens": 30}}], name="m-1")
    flow.add(Agent("writer", model, "Write."))
    flow.edge("writer", END)
    return flow


# A flow whose second node blocks until the test opens GATE: its run stays running.
GATE = threading.Event()
ENTERED = threading.Event()
gated = Flow("ui-gated", purpose="Wait for the test")


@gated.node
def first(ctx):
    return {"first": 1}


@gated.node
def wait_for_test(ctx):
    ENTERED.set()
    if not GATE.wait(60):
        raise TimeoutError("the test never opened the gate")
    return {"second": 2}


gated.edge("first", "wait_for_test")
gated.edge("wait_for_test", END)

# A flow whose at-most-once step kills its own process after its start was journaled:
# resumed, the run pauses in doubt.
charge = Flow("ui-charge", purpose="Charge a card once")


@step(at_most_once=True)
def charge_card() -> str:
    if os.environ.get("UI_TEST_KILL") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return "charged"


@charge.node
def pay(ctx):
    return {"paid": charge_card()}


charge.edge("pay", END)


def one_node(name: str, fn) -> Flow:  # type: ignore[no-untyped-def]
    """A flow of one node, ``fn``."""
    flow = Flow(name)
    flow.add(fn, name="only")
    flow.edge("only", END)
    return flow
