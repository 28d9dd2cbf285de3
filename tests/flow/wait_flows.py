"""Flows for the durable-wait crash tests (run by wait_child.py in real child processes).

Every real side effect appends ``label time`` to the effects file, so a repeated effect
shows up as a repeated line and its time can be compared with the journaled wake-up
time. ``CRASH_AT`` (read by wait_child.py) makes the process SIGKILL itself right after
a commit holding an event of a given kind, or right after a message was taken from the
mailbox (before the engine journaled it).
"""

from __future__ import annotations

import os
import time

from purpose_agent import END, Flow, RetryPolicy, WaitTimeout, step

EFFECTS = os.environ.get("EFFECTS_FILE", "effects.log")


def effect(label: str) -> str:
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # Full precision: a stamp rounded to the millisecond can read up to 0.5 ms before
        # the journaled wake-up time it came after.
        os.write(fd, f"{label} {time.time()!r}\n".encode())
    finally:
        os.close(fd)
    return label


# ── a timer between two effects ──────────────────────────────────────────────────────
sleeper = Flow("sleeper", inline_wait=30.0)


@sleeper.node
def nap(ctx):
    ctx.step("before", effect, "before")
    ctx.sleep(ctx.data.get("seconds", 3.0))
    ctx.step("after", effect, "after")
    return {"woke": True}


sleeper.edge("nap", END)

asleeper = Flow("asleeper", inline_wait=30.0)


@asleeper.node
async def anap(ctx):
    ctx.step("before", effect, "before")
    await ctx.sleep(ctx.data.get("seconds", 3.0))
    ctx.step("after", effect, "after")
    return {"woke": True}


asleeper.edge("anap", END)

# ── two messages awaited in one node, one with a deadline ─────────────────────────────
waiter = Flow("waiter", inline_wait=0.0)


@waiter.node
def listen(ctx):
    ctx.step("before", effect, "before")
    first = ctx.wait_for("note")
    ctx.step("got-first", effect, f"got:{first}")
    second = ctx.wait_for("note")
    ctx.step("got-second", effect, f"got:{second}")
    try:
        late = ctx.wait_for("late", timeout=ctx.data.get("timeout", 0.0))
    except WaitTimeout:
        late = "timed out"
    return {"first": first, "second": second, "late": late}


waiter.edge("listen", END)

# ── retries with durable backoff: fails twice, then succeeds ────────────────────────────
_POLICY = RetryPolicy(max_attempts=4, initial=2.0, backoff=1.0, max_interval=10.0)


@step(retry=_POLICY)
def flaky(label: str) -> str:
    from purpose_agent.flow import current_context

    ctx = current_context()
    calls = sum(1 for line in _lines() if line.startswith(f"{label} "))
    effect(label)
    if calls < 2:
        raise ConnectionError(f"attempt {calls + 1} of {label} failed")
    return f"{label} ok after {calls + 1} calls, key {ctx.idempotency_key() if ctx else None}"


def _lines() -> list[str]:
    try:
        with open(EFFECTS) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


retrier = Flow("retrier", inline_wait=30.0)


@retrier.node
def call_flaky(ctx):
    return {"result": flaky("flaky")}


retrier.edge("call_flaky", END)

node_retrier = Flow("node-retrier", inline_wait=30.0)


@node_retrier.node(retry=_POLICY)
def flaky_node(ctx):
    calls = sum(1 for line in _lines() if line.startswith("node "))
    effect("node")
    if calls < 2:
        raise ConnectionError(f"node attempt {calls + 1} failed")
    return {"attempt": ctx.attempt}


node_retrier.edge("flaky_node", END)

# ── an idempotency key handed to an "external API" (the effects file) ───────────────────
charger = Flow("charger")


@charger.node
def charge(ctx):
    def pay() -> str:
        key = ctx.idempotency_key()
        effect(f"charge {key}")
        if os.environ.get("CRASH_AT") == "in-step":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return key

    return {"key": ctx.step("pay", pay)}


charger.edge("charge", END)

# ── fan-out: six durable steps, two at a time ──────────────────────────────────────────
fanout = Flow("fanout")


@fanout.node
def spread(ctx):
    return {"results": ctx.map(lambda n: effect(f"item{n}"), range(6), max_concurrency=2,
                               name="item")}


fanout.edge("spread", END)

# ── child runs: a parent starts two children, each with one effect ─────────────────────
kid = Flow("kid")


@kid.node
def kid_work(ctx):
    return {"out": ctx.step("effect", effect, f"kid{ctx.data['n']}")}


kid.edge("kid_work", END)
family = Flow("family")


@family.node
def spawn(ctx):
    return {"outs": [ctx.run_child(kid, {"n": n})["out"] for n in (1, 2)]}


family.edge("spawn", END)

FLOWS = {f.name: f for f in (sleeper, asleeper, waiter, retrier, node_retrier, charger,
                             fanout, kid, family)}
