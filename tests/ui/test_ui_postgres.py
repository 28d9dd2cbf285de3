"""The inspector on the PostgreSQL store: same pages, same actions, through the store API."""

from __future__ import annotations

import re

from ui_flows import XSS, approval
from ui_server import StartInspector

from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.state import RunStatus


def test_runs_page_and_approve_on_postgres(start_inspector: StartInspector, pg_url: str) -> None:
    with open_checkpointer(pg_url) as cp:
        for run_id in ("pg-1", "pg-2"):
            assert approval.run({}, checkpointer=cp, run_id=run_id).status is RunStatus.PAUSED
    ui = start_inspector(pg_url, flows=(approval,))
    page = ui.get("/runs?status=paused").text
    assert re.findall(r'data-run="([^"]+)"', page) == ["pg-2", "pg-1"]
    assert "<script>window.__xss" not in ui.get("/inbox").text
    assert "&lt;script&gt;window.__xss" in ui.get("/inbox").text
    assert XSS not in ui.get("/runs/pg-1?tab=transcript").text
    assert ui.post("/runs/pg-1/approve", {"next": "/inbox"}).status_code == 303
    ui.finished("pg-1")
    with open_checkpointer(pg_url) as cp:
        state = cp.load_latest("pg-1")
        assert state is not None and state.status is RunStatus.COMPLETED
        assert state.data["outcome"] == "sent"
    assert re.findall(r'data-run="([^"]+)"', ui.get("/runs?status=completed").text) == ["pg-1"]
    events = ui.get("/runs/pg-1?tab=events").text
    assert 'data-seq="1"' in events and "run.finished" in events
