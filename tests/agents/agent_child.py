"""A child process for the agent tests: runs or resumes a flow of agent_flows.py.

    python agent_child.py run|resume|arun|aresume FLOW DB_PATH RUN_ID [JSON_DATA_OR_KWARGS]

``arun`` / ``aresume`` drive the flow with ``asyncio.run(flow.arun(...))``.

Prints the final status, data and pending request as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys

from agent_flows import FLOWS

from purpose_agent.runtime.checkpoint import open_checkpointer


def main() -> int:
    action, flow_name, db, run_id = sys.argv[1:5]
    extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    flow = FLOWS[flow_name]()
    cp = open_checkpointer(db)  # a SQLite file or a store URL (PostgreSQL too)
    if action == "run":
        state = flow.run(extra or {}, checkpointer=cp, run_id=run_id)
    elif action == "arun":
        state = asyncio.run(flow.arun(extra or {}, checkpointer=cp, run_id=run_id))
    elif action == "aresume":
        state = asyncio.run(flow.aresume(run_id, checkpointer=cp, **(extra or {})))
    else:
        state = flow.resume(run_id, checkpointer=cp, **(extra or {}))
    print(json.dumps({"status": str(state.status), "data": state.data,
                      "pending": state.pending, "error": state.error}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
