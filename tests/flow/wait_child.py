"""A child process for the durable-wait crash tests: runs, resumes or messages a run.

    python wait_child.py run|arun|resume|aresume|send FLOW DB_URL RUN_ID [JSON]

Prints the final status and data as one JSON line. ``CRASH_AT=<event kind>[#N]`` SIGKILLs
the process right after the (Nth) commit holding an event of that kind returned;
``CRASH_AT=receive`` right after a message was taken from the mailbox, before the engine
journaled it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from wait_flows import FLOWS

from purpose_agent import open_checkpointer


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(cp, crash: str) -> None:
    if crash == "receive":
        receive = cp.receive_message

        def receive_then_die(*args, **kwargs):
            found = receive(*args, **kwargs)
            if found is not None:
                die()
            return found

        cp.receive_message = receive_then_die
        return
    commit = cp.commit
    kind, _, nth = crash.partition("#")  # "step.completed#3": after the third such commit
    seen = [0]

    def commit_then_die(run_id, c):
        result = commit(run_id, c)
        if any(str(e.kind) == kind for e in c.events):
            seen[0] += 1
            if seen[0] >= int(nth or 1):
                die()
        return result

    cp.commit = commit_then_die


def main() -> int:
    action, flow_name, url, run_id = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    flow = FLOWS[flow_name]
    cp = open_checkpointer(url)
    if os.environ.get("CRASH_AT") and os.environ["CRASH_AT"] != "in-step":
        arm(cp, os.environ["CRASH_AT"])
    if action == "run":
        state = flow.run(extra or {}, checkpointer=cp, run_id=run_id)
    elif action == "arun":
        state = asyncio.run(flow.arun(extra or {}, checkpointer=cp, run_id=run_id))
    elif action == "resume":
        state = flow.resume(run_id, checkpointer=cp)
    elif action == "aresume":
        state = asyncio.run(flow.aresume(run_id, checkpointer=cp))
    else:  # send: extra = [topic, payload, dedup_key]
        topic, payload, key = extra
        stored = flow.send(run_id, topic, payload, checkpointer=cp, dedup_key=key)
        state = flow.get_state(run_id, checkpointer=cp)
        print(json.dumps({"stored": stored, "status": str(state.status), "data": state.data,
                          "pending": state.pending}), flush=True)
        return 0
    print(json.dumps({"status": str(state.status), "data": state.data,
                      "pending": state.pending}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
