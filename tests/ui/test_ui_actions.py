"""The run page's actions: fork with edited data, resume, cancel, delete, in-doubt steps,
and the flow allow-list, over real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from ui_flows import approval, charge
from ui_server import StartInspector

from purpose_agent.runtime.state import RunStatus

HERE = Path(__file__).parent


def _paused(ui, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert approval.run({}, checkpointer=ui.cp, run_id=run_id).status is RunStatus.PAUSED


def test_fork_at_a_step_with_edited_data_then_resume_it(start_inspector: StartInspector,
                                                        db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "orig-1")
    forked = ui.post("/runs/orig-1/fork", {"at": "1", "update": '{"draft": "Shorter."}',
                                           "new_id": "fork-1"})
    assert forked.status_code == 303 and forked.headers["location"] == "/runs/fork-1"
    page = ui.get("/runs/fork-1").text
    assert 'href="/runs/orig-1">orig-1</a> after step 1' in page
    assert 'id="resume"' in page  # a fork is pending: the page offers to advance it
    state = ui.cp.load_latest("fork-1")
    assert state is not None and state.status is RunStatus.PENDING
    assert state.data["draft"] == "Shorter." and state.current_node == "approve"
    assert ui.cp.load_latest("orig-1").data["draft"].startswith("Dear")  # type: ignore[union-attr]
    assert ui.post("/runs/fork-1/resume").status_code == 303
    ui.finished("fork-1")
    resumed = ui.cp.load_latest("fork-1")
    assert resumed is not None and resumed.status is RunStatus.PAUSED
    assert "Shorter." in ui.get("/inbox").text
    assert ui.post("/runs/fork-1/approve").status_code == 303
    ui.finished("fork-1")
    done = ui.cp.load_latest("fork-1")
    assert done is not None and done.status is RunStatus.COMPLETED
    assert done.data["outcome"] == "sent" and done.completed_nodes == ["draft", "approve",
                                                                       "send"]
    assert ui.post("/runs/orig-1/fork", {"at": "9"}).status_code == 409  # no such step


def test_cancel_and_delete_with_confirmation(start_inspector: StartInspector,
                                             db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "c-1")
    assert ui.post("/runs/c-1/cancel").status_code == 303
    assert ui.cp.load_latest("c-1").status is RunStatus.CANCELLED  # type: ignore[union-attr]
    page = ui.get("/runs/c-1").text
    assert 'id="cancel"' not in page and 'id="delete"' in page
    refused = ui.post("/runs/c-1/delete", {"confirm": "c-2"})
    assert refused.status_code == 400 and "type the run id (c-1)" in refused.text
    assert ui.cp.run_info("c-1") is not None
    gone = ui.post("/runs/c-1/delete", {"confirm": "c-1"})
    assert gone.status_code == 303 and gone.headers["location"] == "/runs"
    assert ui.cp.run_info("c-1") is None
    assert ui.get("/runs/c-1").status_code == 404
    invalid = ui.get("/runs/bad%20id")
    assert invalid.status_code == 400 and "InvalidRunId" in invalid.text


def test_in_doubt_step_record_its_result_or_retry_it(start_inspector: StartInspector,
                                                     db_url: str) -> None:
    """A process dies inside an at-most-once step; from the page, resume finds it in
    doubt; a person says it happened (its result is recorded, it is not run again) or
    retries it."""
    env = {**os.environ, "UI_TEST_KILL": "1"}
    for run_id in ("doubt-1", "doubt-2"):
        child = subprocess.run([sys.executable, str(HERE / "ui_child.py"), "charge", db_url,
                                run_id], env=env, capture_output=True, text=True, timeout=60)
        assert child.returncode == -signal.SIGKILL, child.stderr
    ui = start_inspector(db_url, flows=(charge,))
    page = ui.get("/runs/doubt-1").text
    assert "stalled: resume it" in page and 'id="resume"' in page
    for run_id in ("doubt-1", "doubt-2"):
        assert ui.post(f"/runs/{run_id}/resume").status_code == 303
        ui.finished(run_id)
        assert ui.cp.load_latest(run_id).pending["kind"] == "in_doubt"  # type: ignore[index,union-attr]
    inbox = ui.get("/inbox").text
    assert inbox.count("started but its result was never journaled") == 2
    assert 'action="/runs/doubt-1/record"' in inbox and 'action="/runs/doubt-1/retry"' in inbox
    assert ui.post("/runs/doubt-1/record", {"answer": '"charged by hand"'}).status_code == 303
    ui.finished("doubt-1")
    recorded = ui.cp.load_latest("doubt-1")
    assert recorded is not None and recorded.status is RunStatus.COMPLETED
    assert recorded.data["paid"] == "charged by hand"
    assert ui.post("/runs/doubt-2/retry").status_code == 303  # UI_TEST_KILL unset here
    ui.finished("doubt-2")
    retried = ui.cp.load_latest("doubt-2")
    assert retried is not None and retried.data["paid"] == "charged"


def test_a_flow_that_is_not_allowed_is_never_run(start_inspector: StartInspector,
                                                 db_url: str, tmp_path: Path) -> None:
    """The inspector runs only flows it was given (or the project declares): a run of
    another flow can be looked at, not advanced, and nothing is imported for it."""
    ui = start_inspector(db_url)  # no flows given
    _paused(ui, "foreign-1")
    refused = ui.post("/runs/foreign-1/approve")
    assert refused.status_code == 409
    text = re.sub(r"\s+", " ", refused.text)
    assert "FlowNotAllowed" in text and "not one of the flows allowed here" in text
    assert "purpose-agent ui --flow" in text
    assert ui.cp.load_latest("foreign-1").status is RunStatus.PAUSED  # type: ignore[union-attr]
    # cancel and fork run no flow code: allowed
    assert ui.post("/runs/foreign-1/fork", {"at": "0", "new_id": "f-copy"}).status_code == 303
    assert ui.post("/runs/foreign-1/cancel").status_code == 303


def test_busy_run_is_not_resumed_twice(start_inspector: StartInspector, db_url: str) -> None:
    import threading

    from ui_flows import ENTERED, GATE, gated
    ui = start_inspector(db_url, flows=(gated,))
    GATE.clear()
    ENTERED.clear()
    worker = threading.Thread(target=gated.run, args=({},),
                              kwargs={"checkpointer": ui.cp, "run_id": "busy-1"})
    worker.start()
    try:
        assert ENTERED.wait(30)
        assert 'id="resume"' not in ui.get("/runs/busy-1").text
        refused = ui.post("/runs/busy-1/resume")
        assert refused.status_code == 409 and "is being advanced by" in refused.text
        refused = ui.post("/runs/busy-1/delete", {"confirm": "busy-1"})
        assert refused.status_code == 409 and "cancel it first" in refused.text
    finally:
        GATE.set()
        worker.join(30)
    assert ui.cp.load_latest("busy-1").status is RunStatus.COMPLETED  # type: ignore[union-attr]


def test_an_unchanged_edit_form_is_not_an_edit(start_inspector: StartInspector,
                                               db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "same-1")
    draft = ui.cp.load_latest("same-1").data["draft"]  # type: ignore[union-attr]
    assert ui.post("/runs/same-1/answer", {"answer": "true",
                                          "update": json.dumps({"draft": draft})}
                   ).status_code == 303
    ui.finished("same-1")
    resumed = [e for e in ui.cp.list_events("same-1") if str(e.kind) == "run.resumed"]
    assert resumed[0].payload["updated"] == []


def test_actions_that_do_not_fit_the_run_are_refused_before_anything_runs(
        start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "fit-1")
    for verb, why in (("resume", "approve, reject or answer it"),
                      ("record", "has no step in doubt"), ("retry", "has no step in doubt")):
        refused = ui.post(f"/runs/fit-1/{verb}", {"answer": "1"})
        assert refused.status_code == 409 and why in refused.text, verb
    assert "fit-1" not in ui.actions.activity
    assert ui.post("/runs/fit-1/approve").status_code == 303
    ui.finished("fit-1")
    refused = ui.post("/runs/fit-1/approve")
    assert refused.status_code == 409 and "is completed" in refused.text
