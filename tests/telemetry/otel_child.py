"""A child process for the OTLP tests: ``python otel_child.py run|resume DB RUN_ID``.

Telemetry is on through the environment only (``PURPOSE_AGENT_OTEL=1`` and the standard
``OTEL_*`` variables), as a deployed process would have it. With ``HOLD=1`` node ``c``
stops after its durable step ``s1`` committed, reading stdin, until the test kills it.
"""

from __future__ import annotations

import os
import sys

from purpose_agent import END, Flow, SQLiteCheckpointer

flow = Flow("otel-crash", purpose="four nodes and a crash")


@flow.node
def a(ctx):  # type: ignore[no-untyped-def]
    return {"a": ctx.step("fetch", lambda: 1)}


@flow.node
def b(ctx):  # type: ignore[no-untyped-def]
    return {"b": 2}


@flow.node
def c(ctx):  # type: ignore[no-untyped-def]
    value = ctx.step("s1", lambda: 3)
    if os.environ.get("HOLD") == "1":
        sys.stdout.write("holding\n")
        sys.stdout.flush()
        sys.stdin.readline()  # killed here
    return {"c": value}


@flow.node
def d(ctx):  # type: ignore[no-untyped-def]
    return {"d": 4}


flow.edge("a", "b")
flow.edge("b", "c")
flow.edge("c", "d")
flow.edge("d", END)

if __name__ == "__main__":
    command, db, run_id = sys.argv[1:4]
    cp = SQLiteCheckpointer(db)
    state = (flow.run({}, checkpointer=cp, run_id=run_id) if command == "run"
             else flow.resume(run_id, checkpointer=cp))
    print(state.status)
