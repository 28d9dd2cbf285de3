"""A child process for the inspector tests: ``python ui_child.py FLOW DB_URL RUN_ID``
runs a flow of ui_flows.py (``UI_TEST_KILL=1`` makes the charge flow SIGKILL itself
inside its at-most-once step)."""

from __future__ import annotations

import sys

import ui_flows

from purpose_agent import open_checkpointer


def main() -> int:
    name, url, run_id = sys.argv[1:4]
    flow = getattr(ui_flows, name)
    state = flow.run({}, checkpointer=open_checkpointer(url), run_id=run_id)
    print(state.status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
