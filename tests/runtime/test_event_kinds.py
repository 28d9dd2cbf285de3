"""Event kinds say what happened: ``node.*`` for a node execution, ``step.*`` for a
durable step. Journals written by earlier releases (``agent.*``, ``tool.*``) still read,
filter and render as they did; the old Python names are aliases."""

from __future__ import annotations

import shutil
from pathlib import Path

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent, kind_values
from purpose_agent.runtime.transcript import render_transcript

OLD_FILE = Path(__file__).parents[1] / "flow" / "data" / "schema2.db"  # an earlier release's

# What that release rendered for its finished run (its own render_transcript).
OLD_TRANSCRIPT = """\
#1    run started: flow refund — Refund an order once a person approves it
#2    ▶ look_up
#3      → fetch_order("D-1")
#4      ← fetch_order: {"amount":42.0,"id":"D-1"}
#5    ✓ look_up updated order
#6    ▶ approve
#7      ? asks a person: {"question":"Refund 42.0?"}
#8    run paused at approve, waiting for a person
#9    run resumed (was paused)
#10     ! a person answered: true
#11   ▶ approve
#12   ✓ approve updated approved
#13   ▶ refund
#14     → issue_refund("D-1", 42.0)
#15     ← issue_refund: refund-D-1
#16   ✓ refund updated receipt
#17   run finished after 3 node(s)
"""


def test_a_run_journals_node_and_step_kinds(tmp_path: Path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = Flow("kinds")

    @flow.node
    def work(ctx):
        ctx.emit("halfway")
        return {"x": ctx.step("double", lambda n: 2 * n, 21)}

    flow.edge("work", END)
    flow.run({}, checkpointer=cp, run_id="k1")
    assert [str(e.kind) for e in cp.list_events("k1")] == [
        "run.started", "node.started", "node.progress", "step.started", "step.completed",
        "node.completed", "run.finished"]
    started, *_ = cp.list_events("k1", kinds=EventKind.NODE_STARTED)
    assert started.payload == {"attempt": 1, "execution": 1}
    assert cp.list_events("k1", kinds="run.finished")[0].payload == {"executions": 1}


def test_a_journal_of_an_earlier_release_reads_filters_and_renders_as_before(
        tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    shutil.copy(OLD_FILE, path)
    cp = SQLiteCheckpointer(path)
    events = cp.list_events("done")
    assert render_transcript(events) == OLD_TRANSCRIPT
    assert [e.kind for e in events][1:5] == [
        EventKind.NODE_STARTED, EventKind.STEP_STARTED, EventKind.STEP_COMPLETED,
        EventKind.NODE_COMPLETED]
    # A filter on today's kind (or the old value) finds the old events.
    assert [e.seq for e in cp.list_events("done", kinds=EventKind.NODE_COMPLETED)] == [5, 12, 16]
    assert [e.seq for e in cp.list_events("done", kinds="tool.call")] == [3, 14]
    raw = PAEvent.from_dict({"run_id": "r", "kind": "agent.signal_caught"})
    assert raw.kind is EventKind.NODE_SIGNAL_CAUGHT


def test_old_names_are_aliases_and_unknown_kinds_are_kept() -> None:
    assert EventKind.AGENT_FINISHED is EventKind.NODE_COMPLETED  # the seed contract's name
    assert EventKind.AGENT_PROGRESS is EventKind.NODE_PROGRESS
    assert EventKind.TOOL_CALL is EventKind.STEP_STARTED
    assert EventKind("tool.result") is EventKind.STEP_COMPLETED
    assert kind_values(EventKind.NODE_FAILED) == ("node.failed", "agent.error")
    assert kind_values("later.kind") == ("later.kind",)
    assert PAEvent.from_dict({"run_id": "r", "kind": "later.kind"}).kind == "later.kind"
    assert render_transcript([PAEvent("r", "later.kind", seq=1)]) == "#1      later.kind\n"  # type: ignore[arg-type]
