"""A child process for the crash tests: runs or resumes a flow of crash_flows.py.

    python crash_child.py run|resume FLOW DB_URL RUN_ID [JSON_DATA_OR_ANSWER]

Prints the final status and data as one JSON line. ``CRASH_AT`` (see crash_flows) makes
it SIGKILL itself; ``CRASH_AT=<node>:commit`` kills right after that node's commit.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from crash_flows import FLOWS

from purpose_agent import RunBusyError, open_checkpointer
from purpose_agent.errors import PurposeAgentError


def kill_after_commit(cp, node: str) -> None:
    original = cp.commit

    def commit(run_id, commit):
        result = original(run_id, commit)
        if any(str(e.kind) == "node.completed" and e.node == node for e in commit.events):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    cp.commit = commit


def main() -> int:
    action, flow_name, url, run_id = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    flow = FLOWS[flow_name]
    cp = open_checkpointer(url)
    crash = os.environ.get("CRASH_AT", "")
    if crash.endswith(":commit"):
        kill_after_commit(cp, crash.split(":")[0])
    try:
        if action == "run":
            state = flow.run(extra or {}, checkpointer=cp, run_id=run_id)
        elif extra is not None:
            state = flow.resume(run_id, checkpointer=cp, **extra)
        else:
            state = flow.resume(run_id, checkpointer=cp)
    except RunBusyError as exc:
        print(json.dumps({"error": "busy", "message": str(exc)}), flush=True)
        return 3
    except PurposeAgentError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}), flush=True)
        return 4
    print(json.dumps({"status": str(state.status), "data": state.data,
                      "pending": state.pending}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
