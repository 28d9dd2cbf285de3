"""A child process for the concurrent crash test: 32 runs at once on one SQLite file.

    KILL_AFTER=N python crash_many_child.py DB_URL EFFECTS_FILE

Runs (or resumes, or leaves alone when completed) runs ``r0`` … ``r31`` of the flow
below at the same time: the even ones in threads (``flow.run``/``resume``), the odd ones
as tasks of one event loop (``arun``/``aresume``), so their commits share transactions
of the store's group commit. Every node makes one durable step whose side effect
appends ``<run>/<node> <token>`` to EFFECTS_FILE (a fresh token per real execution) and
returns the token.

Prints to stdout, one line each, what the store has told this process is durable:
``step <run> <node> <token>`` once a step returned (its result committed), ``node <run>
<node> <pid>`` once a node's commit returned (seen when the next node starts, or the run
returns); the node's commit journals an ``executed`` event with this process's pid.
With ``KILL_AFTER=N`` the process SIGKILLs itself right after printing its N-th line. The test SIGKILLs this process after some of those lines.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import threading
import uuid
from itertools import pairwise

from purpose_agent import END, Flow, open_checkpointer
from purpose_agent.runtime.state import RunStatus

RUNS = [f"r{i}" for i in range(32)]
NODES = [f"n{i}" for i in range(8)]
RETURNED: set[tuple[str, str]] = set()  # (run, node) whose node returned in this process
EFFECTS = sys.argv[2] if len(sys.argv) > 2 else "effects.log"


KILL_AFTER = int(os.environ.get("KILL_AFTER", "0"))  # SIGKILL self after this many lines
_said = itertools.count(1)


def say(line: str) -> None:
    os.write(1, f"{line}\n".encode())  # one write: lines of threads never interleave
    if next(_said) == KILL_AFTER:
        # Right after being told something is durable: had it not been, it is lost now.
        os.kill(os.getpid(), signal.SIGKILL)


def effect(label: str) -> str:
    token = uuid.uuid4().hex[:12]
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{label} {token}\n".encode())
    finally:
        os.close(fd)
    return token


def make_node(index: int):
    name = NODES[index]

    def told_before(ctx) -> None:
        # This node started: the previous node's commit returned, to this process if
        # the previous node ran here.
        if index > 0 and (ctx.run_id, NODES[index - 1]) in RETURNED:
            say(f"node {ctx.run_id} {NODES[index - 1]} {os.getpid()}")

    def after_step(ctx, token: str) -> dict[str, str]:
        say(f"step {ctx.run_id} {name} {token}")
        # Journaled with the node's completion: which process's execution committed it.
        ctx.emit("executed", pid=os.getpid())
        RETURNED.add((ctx.run_id, name))
        return {name: token}

    def node(ctx):
        told_before(ctx)
        return after_step(ctx, ctx.step("effect", effect, f"{ctx.run_id}/{name}"))

    async def anode(ctx):
        told_before(ctx)
        await asyncio.sleep(0)
        return after_step(ctx, ctx.step("effect", effect, f"{ctx.run_id}/{name}"))

    return node, anode


def build(is_async: bool) -> Flow:
    flow = Flow("crash-many", purpose="32 runs at once, killed at random")
    for index, name in enumerate(NODES):
        flow.add(make_node(index)[1 if is_async else 0], name=name)
    for a, b in pairwise(NODES):
        flow.edge(a, b)
    flow.edge(NODES[-1], END)
    return flow


def main() -> int:
    cp = open_checkpointer(sys.argv[1])
    sync_flow, async_flow = build(False), build(True)
    errors: list[BaseException] = []

    def todo(run: str) -> str | None:
        info = cp.run_info(run)
        if info is None:
            return "start"
        return None if info.status == RunStatus.COMPLETED else "resume"

    def thread_run(run: str) -> None:
        try:
            what = todo(run)
            if what is not None:
                state = (sync_flow.run({}, checkpointer=cp, run_id=run) if what == "start"
                         else sync_flow.resume(run, checkpointer=cp))
                assert state.status == RunStatus.COMPLETED, (run, state.status, state.error)
                if (run, NODES[-1]) in RETURNED:
                    say(f"node {run} {NODES[-1]} {os.getpid()}")
        except BaseException as exc:
            errors.append(exc)

    async def task_run(run: str) -> None:
        what = todo(run)
        if what is None:
            return
        state = (await async_flow.arun({}, checkpointer=cp, run_id=run) if what == "start"
                 else await async_flow.aresume(run, checkpointer=cp))
        assert state.status == RunStatus.COMPLETED, (run, state.status, state.error)
        if (run, NODES[-1]) in RETURNED:
            say(f"node {run} {NODES[-1]} {os.getpid()}")

    async def tasks() -> None:
        await asyncio.gather(*(task_run(run) for run in RUNS[1::2]))

    threads = [threading.Thread(target=thread_run, args=(run,)) for run in RUNS[0::2]]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
