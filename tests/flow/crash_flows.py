"""Flows that the crash tests run in real child processes (see crash_child.py).

Every durable step appends a line to the effects file, so a repeated side effect shows
up as a repeated line. ``CRASH_AT=node:point`` makes the process SIGKILL itself at that
point: ``enter`` (the node starts), ``between`` (after its first step), ``last`` (after its
last step, before the node's commit), ``commit`` (right after the node's commit returned),
``amo`` (inside an at-most-once step, after its start was journaled).
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import uuid
from itertools import pairwise
from pathlib import Path

from purpose_agent import END, Flow, step

EFFECTS = os.environ.get("EFFECTS_FILE", "effects.log")
NODES = ["n1", "n2", "n3", "n4", "n5"]


def crash_here(node: str, point: str) -> None:
    if os.environ.get("CRASH_AT") == f"{node}:{point}":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def effect(label: str) -> str:
    """The side effect: one line per real execution."""
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{label}\n".encode())
    finally:
        os.close(fd)
    return label.upper()


def make_node(name: str):
    def node(ctx):
        crash_here(name, "enter")
        first = ctx.step("s1", effect, f"{name}.s1")
        crash_here(name, "between")
        second = ctx.step("s2", effect, f"{name}.s2")
        crash_here(name, "last")
        return {name: [first, second], "trail": name}

    node.__name__ = name
    return node


flow = Flow("crash-five", purpose="five nodes, two durable steps each",
            reducers={"trail": "append"})
for _name in NODES:
    flow.add(make_node(_name))
for _a, _b in pairwise(NODES):
    flow.edge(_a, _b)
flow.edge(NODES[-1], END)


# ── at-most-once ────────────────────────────────────────────────────────────────
@step(at_most_once=True)
def charge_card(amount: int) -> str:
    effect(f"charge.{amount}")
    crash_here("pay", "amo")
    return f"charged {amount}"


payments = Flow("payments", purpose="charge a card exactly once")


@payments.node
def pay(ctx):
    receipt = charge_card(ctx.data["amount"])
    return {"receipt": receipt}


@payments.node
def notify(ctx):
    ctx.step("notify", effect, "notify")
    return {"notified": True}


payments.edge("pay", "notify").edge("notify", END)


# ── steps whose arguments change on every execution (a timestamp, a uuid) ─────────
@step(at_most_once=True)
def charge_noted(order: str, note: str) -> str:
    effect(f"charge.{order}")
    crash_here("pay_noted", "amo")
    return f"charged {order}"


def noted_effect(label: str, note: str) -> str:
    return effect(label)


noted = Flow("noted", purpose="steps called with a fresh timestamp and uuid each time")


@noted.node
def pay_noted(ctx):
    # The note differs on every execution: the step is still the same step.
    receipt = charge_noted("A-17", f"at {time.time()} {uuid.uuid4()}")
    return {"receipt": receipt}


@noted.node
def log_noted(ctx):
    first = ctx.step("log", noted_effect, "log", f"{uuid.uuid4()}")
    crash_here("log_noted", "between")
    second = ctx.step("log2", noted_effect, "log2", f"{time.time()}")
    return {"logged": [first, second]}


noted.edge("pay_noted", "log_noted").edge("log_noted", END)


# ── a store whose files cannot grow (RLIMIT_FSIZE: the kernel's "file too large") ──
full = Flow("full-disk", purpose="a node whose completion the file system refuses")


@full.node
def fill(ctx):
    ctx.step("fill", effect, "fill")
    return {"filled": True}


@full.node
def big(ctx):
    ctx.step("fetch", effect, "fetch")
    # From here on no file of this process may grow past its size plus a little: the
    # node's large update cannot be written (EFBIG, as SIGXFSZ is ignored, not a kill).
    if os.environ.get("LIMIT_FILES_IN"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        largest = max(p.stat().st_size for p in Path(os.environ["LIMIT_FILES_IN"]).rglob("*")
                      if p.is_file())
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 8192, resource.RLIM_INFINITY))
    return {"tree": "x" * 300_000}


full.edge("fill", "big").edge("big", END)


# ── human in the loop ──────────────────────────────────────────────────────────
review = Flow("review", purpose="a person approves a draft")


@review.node
def draft(ctx):
    text = ctx.step("write", effect, "draft")
    return {"draft": f"draft for {ctx.data['ticket']}: {text}"}


@review.node
def approve(ctx):
    ctx.step("prepare", effect, "prepare")
    try:
        answer = ctx.interrupt({"question": "Send this reply?", "draft": ctx.data["draft"]})
    except Exception:  # a user's broad handler must not swallow the pause
        answer = "swallowed"
    return {"approved": answer == "yes"}


@review.node
def send(ctx):
    ctx.step("send", effect, f"send:{ctx.data['draft']}")
    return {"sent": True}


review.edge("draft", "approve")
review.route("approve", lambda data: "send" if data["approved"] else END)
review.edge("send", END)


# ── a node that waits for its parent process (lease and cancel tests) ───────────
blocking = Flow("blocking", purpose="waits on stdin inside a node", lease_ttl=1.0)


@blocking.node
def first(ctx):
    ctx.step("first", effect, "first")
    print("inside", flush=True)
    sys.stdin.readline()  # the parent says when to go on
    return {"first": True}


@blocking.node
def second(ctx):
    ctx.step("second", effect, "second")
    return {"second": True}


blocking.edge("first", "second").edge("second", END)

FLOWS = {"crash-five": flow, "payments": payments, "review": review, "blocking": blocking,
         "noted": noted, "full-disk": full}
