"""Flows the queue tests enqueue and their worker processes serve (loaded by file path).

Every durable step appends one line, ``run_id node step-name pid``, to the file
``$QUEUE_EFFECTS`` (fsynced before the step returns), so a test can count how many
times each effect happened, and in which process.
"""

from __future__ import annotations

import os
import threading

from purpose_agent import END, Flow, NodeContext

_lock = threading.Lock()


def record(ctx: NodeContext, name: str) -> str:
    """The side effect: one fsynced line naming the run and the step."""
    line = f"{ctx.run_id} {ctx.node} {name} {os.getpid()}\n"
    path = os.environ.get("QUEUE_EFFECTS")
    if path:
        with _lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
    return line.strip()


STEPS = ("one", "two", "three")
effects = Flow("effects", purpose="Three nodes, two durable steps each", lease_ttl=1.5)


def _node(name: str):  # type: ignore[no-untyped-def]
    def node(ctx: NodeContext) -> dict[str, object]:
        first = ctx.step(f"{name}-a", record, ctx, f"{name}-a")
        if work := ctx.data.get("work"):  # the node's own work, between its two steps
            threading.Event().wait(work)
        second = ctx.step(f"{name}-b", record, ctx, f"{name}-b")
        return {name: [first, second]}
    node.__name__ = name
    return node


for step_name in STEPS:
    effects.add(_node(step_name), name=step_name)
effects.edge("one", "two")
effects.edge("two", "three")
effects.edge("three", END)


# A flow whose node waits until a file exists: a test holds a run in flight with it.
gated = Flow("gated", purpose="Waits at a gate file", lease_ttl=1.5)


@gated.node
def wait_at_gate(ctx: NodeContext) -> dict[str, object]:
    gate = ctx.data["gate"]
    ctx.step("entered", record, ctx, "entered")
    while not os.path.exists(gate):
        threading.Event().wait(0.02)  # polls a file another process creates
    return {"passed": True}


@gated.node
def after_gate(ctx: NodeContext) -> dict[str, object]:
    return {"after": ctx.step("after", record, ctx, "after")}


gated.edge("wait_at_gate", "after_gate")
gated.edge("after_gate", END)


approval = Flow("approval", purpose="Asks a person, then acts", lease_ttl=1.5)


@approval.node
def ask(ctx: NodeContext) -> dict[str, object]:
    return {"answer": ctx.interrupt({"question": "go?"})}


@approval.node
def act(ctx: NodeContext) -> dict[str, object]:
    return {"acted": ctx.step("act", record, ctx, "act")}


approval.edge("ask", "act")
approval.edge("act", END)


# Durable waits on a queue: a run that sleeps, and one that waits for a message; each
# parks on its queue (QUEUED, holding no worker slot) until its time or its message.
sleepy = Flow("sleepy", purpose="Sleeps between two steps", lease_ttl=1.5)


@sleepy.node
def nap(ctx: NodeContext) -> dict[str, object]:
    ctx.step("before", record, ctx, "before")
    ctx.sleep(float(ctx.data.get("seconds", 2.0)))  # type: ignore[arg-type]
    ctx.step("after", record, ctx, "after")
    return {"woke": True}


sleepy.edge("nap", END)

listener = Flow("listener", purpose="Waits for a message", lease_ttl=1.5)


@listener.node
def listen(ctx: NodeContext) -> dict[str, object]:
    ctx.step("before", record, ctx, "before")
    got = ctx.wait_for("note")
    ctx.step("after", record, ctx, "after")
    return {"got": got}


listener.edge("listen", END)


# Child runs on a queue: the parent enqueues its child and waits on its queue for it.
kid = Flow("kid", purpose="A child run", lease_ttl=1.5)


@kid.node
def kid_work(ctx: NodeContext) -> dict[str, object]:
    return {"out": ctx.step("work", record, ctx, "work")}


kid.edge("kid_work", END)
family = Flow("family", purpose="Starts two child runs", lease_ttl=1.5)


@family.node
def spawn(ctx: NodeContext) -> dict[str, object]:
    first = ctx.run_child(kid, {"n": 1})
    second = ctx.run_child(kid, {"n": 2})
    return {"outs": [first["out"], second["out"]]}


family.edge("spawn", END)


together = Flow("together", purpose="Starts two child runs at once", lease_ttl=1.5)


@together.node
def spawn_both(ctx: NodeContext) -> dict[str, object]:
    got = ctx.gather(ctx.child(kid, {"n": 1}), ctx.child(kid, {"n": 2}))
    return {"outs": [g["out"] for g in got]}


together.edge("spawn_both", END)
