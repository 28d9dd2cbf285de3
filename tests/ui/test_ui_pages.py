"""The inspector's pages over real HTTP, on runs made by real flows in a SQLite file."""

from __future__ import annotations

import html
import re

from markupsafe import escape
from ui_flows import GATE, XSS, agent_flow, approval, one_node
from ui_server import StartInspector

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.state import RunStatus


def _paused(cp: BaseCheckpointer, run_id: str) -> None:
    state = approval.run({}, checkpointer=cp, run_id=run_id)
    assert state.status is RunStatus.PAUSED


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr class="run status-\w+" data-run="([^"]+)"', page)


def test_runs_newest_first_with_one_click_filters_and_search(
        start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    quick = one_node("ui-quick", lambda ctx: {"done": True})
    for i in range(3):
        quick.run({}, checkpointer=ui.cp, run_id=f"quick-{i}")
    _paused(ui.cp, "asks-1")
    def boom(ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("no")
    failing = one_node("ui-failing", boom)
    failing.run({}, checkpointer=ui.cp, run_id="broken-1")

    page = ui.get("/runs").text
    assert _rows(page) == ["broken-1", "asks-1", "quick-2", "quick-1", "quick-0"]
    assert 'href="/runs?status=paused" id="filter-waiting"' in page
    assert _rows(ui.get("/runs?status=paused").text) == ["asks-1"]
    assert "asks a person" in ui.get("/runs?status=paused").text
    assert _rows(ui.get("/runs?status=failed").text) == ["broken-1"]
    assert _rows(ui.get("/runs?flow=ui-quick").text) == ["quick-2", "quick-1", "quick-0"]
    assert _rows(ui.get("/runs?q=ick-1").text) == ["quick-1"]
    assert ui.get("/runs?status=nonsense").status_code == 400
    rows = ui.get("/runs?format=json").json()["runs"]
    assert [r["run_id"] for r in rows][:2] == ["broken-1", "asks-1"]
    assert rows[1]["waiting_for"] == "interrupt"


def _next_page(page: str) -> str | None:
    found = re.search(r'id="next-page" href="([^"]+)"', page)
    return html.unescape(found.group(1)) if found else None


def test_runs_are_paged_by_key(start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url)
    quick = one_node("ui-quick", lambda ctx: {})
    for i in range(120):
        quick.run({}, checkpointer=ui.cp, run_id=f"r-{i:03d}")
    first = ui.get("/runs").text
    assert _rows(first) == [f"r-{i:03d}" for i in range(119, 69, -1)]
    second_url = _next_page(first)
    assert second_url is not None and "after=" in second_url
    second = ui.get(second_url).text
    assert _rows(second) == [f"r-{i:03d}" for i in range(69, 19, -1)]
    assert 'id="newest-page" href="/runs"' in second
    last = ui.get(_next_page(second) or "").text
    assert _rows(last) == [f"r-{i:03d}" for i in range(19, -1, -1)]
    assert 'id="next-page"' not in last
    # a search is paged too: 100 ids match, the second page shows the older 50
    searched = ui.get("/runs?q=r-0").text
    assert "q=r-0" in (_next_page(searched) or "")
    assert _rows(ui.get(_next_page(searched) or "").text) == [
        f"r-{i:03d}" for i in range(49, -1, -1)]
    assert ui.get("/runs?after=garbage").status_code == 400
    assert ui.get("/runs?q=%00").status_code == 200


def test_live_fragment_follows_a_running_run(start_inspector: StartInspector,
                                             db_url: str) -> None:
    import threading

    from ui_flows import ENTERED, gated
    ui = start_inspector(db_url)
    GATE.clear()
    ENTERED.clear()
    worker = threading.Thread(target=gated.run, args=({},),
                              kwargs={"checkpointer": ui.cp, "run_id": "live-1"})
    worker.start()
    try:
        assert ENTERED.wait(30)
        rows = ui.get("/runs?fragment=rows").text
        assert "<html" not in rows  # only the rows: the script swaps them in
        assert 'data-run="live-1"' in rows and ">running<" in rows
        header = ui.get("/runs/live-1?fragment=header").text
        assert 'data-state="running:' in header
    finally:
        GATE.set()
        worker.join(30)
    assert ">completed<" in ui.get("/runs?fragment=rows").text
    assert 'data-state="completed:' in ui.get("/runs/live-1?fragment=header").text


def test_inbox_lists_questions_across_flows(start_inspector: StartInspector,
                                            db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui.cp, "ask-a")
    page = ui.get("/inbox").text
    assert 'data-run="ask-a"' in page
    assert "Send this reply?" in page
    assert 'action="/runs/ask-a/approve"' in page and 'action="/runs/ask-a/reject"' in page
    assert 'action="/runs/ask-a/answer"' in page
    # the edit form starts from the data the question shows (the draft)
    assert str(escape('"draft": "Dear customer')) in page
    assert "1 waiting" in page


def test_approve_from_the_inbox_completes_the_run(start_inspector: StartInspector,
                                                  db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui.cp, "ask-1")
    token = ui.csrf("/inbox")
    response = ui.post("/runs/ask-1/approve", {"next": "/inbox"}, csrf=token)
    assert response.status_code == 303 and response.headers["location"] == "/inbox"
    ui.finished("ask-1")
    state = ui.cp.load_latest("ask-1")
    assert state is not None and state.status is RunStatus.COMPLETED
    assert state.data["outcome"] == "sent"
    assert 'data-run="ask-1"' not in ui.get("/inbox").text
    assert "approve from this page: run is completed" in ui.get("/runs/ask-1").text


def test_reject_and_answer_with_edited_data(start_inspector: StartInspector,
                                            db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui.cp, "no-1")
    _paused(ui.cp, "edit-1")
    assert ui.post("/runs/no-1/reject").status_code == 303
    ui.finished("no-1")
    assert ui.cp.load_latest("no-1").data["outcome"] == "kept"  # type: ignore[union-attr]
    answer = ui.post("/runs/edit-1/answer", {"answer": "true",
                                            "update": '{"draft": "Edited <b>by</b> me"}'})
    assert answer.status_code == 303
    ui.finished("edit-1")
    state = ui.cp.load_latest("edit-1")
    assert state is not None and state.data["draft"] == "Edited <b>by</b> me"
    assert state.data["approved"] is True and state.data["outcome"] == "sent"


def test_bad_json_is_refused_and_nothing_happens(start_inspector: StartInspector,
                                                 db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui.cp, "bad-1")
    refused = ui.post("/runs/bad-1/answer", {"answer": "yes"})
    assert refused.status_code == 400
    assert "the answer is not valid JSON" in refused.text and "strings need quotes" in refused.text
    not_object = ui.post("/runs/bad-1/answer", {"answer": "true", "update": "[1]"})
    assert not_object.status_code == 400 and "must be a JSON object" in not_object.text
    assert ui.cp.load_latest("bad-1").status is RunStatus.PAUSED  # type: ignore[union-attr]
    assert "bad-1" not in ui.actions.activity


def test_run_page_timeline_transcript_usage_and_state(start_inspector: StartInspector,
                                                      db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    flow = agent_flow("Here is the <b>answer</b>")
    flow.run({"input": "hi"}, checkpointer=ui.cp, run_id="agent-1")
    timeline = ui.get("/runs/agent-1").text
    assert re.search(r'<tr class="bar-row node">\s*<td class="label depth0">writer</td>',
                     timeline)
    assert re.search(r'<rect x="[\d.]+%" y="1" width="[\d.]+%" height="12" class="bar model"',
                     timeline)
    transcript = ui.get("/runs/agent-1?tab=transcript").text
    assert "model m-1 → Here is the &lt;b&gt;answer&lt;/b&gt; [150 tokens]" in transcript
    assert re.search(r"<td>m-1</td><td class=\"num\">120</td><td class=\"num\">30</td>"
                     r"<td class=\"num\">150</td>", transcript)
    assert "run total: 1 model call, 150 tokens (120 in, 30 out)" in transcript

    _paused(ui.cp, "wait-1")
    waits = ui.get("/runs/wait-1").text
    assert re.search(r'<td class="label depth0">waiting for a person</td>', waits)
    assert "class=\"bar wait open\"" in waits
    state = ui.get("/runs/wait-1?tab=state&step=1").text
    assert "data after step 1 (draft)" in state
    assert re.search(r'<td class="path">\$\.draft</td><td>added</td>', state)
    assert 'name="at" value="1"' in state  # the fork form forks here


def test_timeline_shows_a_crash_as_a_stop(start_inspector: StartInspector, db_url: str) -> None:
    """A run resumed after its process died: the dead time is its own bar, not work."""
    from purpose_agent.runtime.events import EventKind, PAEvent
    from purpose_agent.ui.timeline import build

    events = [PAEvent("c", EventKind.RUN_STARTED, seq=1, ts=100.0),
              PAEvent("c", EventKind.NODE_STARTED, seq=2, ts=100.0, node="a"),
              PAEvent("c", EventKind.STEP_STARTED, seq=3, ts=100.5, node="a",
                      payload={"step": "s"}),
              PAEvent("c", EventKind.RUN_RESUMED, seq=4, ts=3700.0,
                      payload={"previous": "running"}),
              PAEvent("c", EventKind.NODE_STARTED, seq=5, ts=3700.0, node="a",
                      payload={"attempt": 2}),
              PAEvent("c", EventKind.NODE_COMPLETED, seq=6, ts=3701.0, node="a")]
    timeline = build(events)
    kinds = [(b.kind, b.label, round(b.duration, 1)) for b in timeline.bars]
    assert kinds == [("node", "a", 0.5), ("step", "s", 0.0),
                     ("stopped", "process died: stopped until resumed", 3599.5),
                     ("node", "a (attempt 2)", 1.0)]
    assert timeline.work_seconds == 1.5 and timeline.stopped_seconds == 3599.5
    stop = timeline.bars[2]
    assert stop.width < 10  # an hour of nothing is drawn short; its label says how long


def test_events_are_paged_without_reading_the_whole_run(
        start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url)
    def talk(ctx):  # type: ignore[no-untyped-def]
        for i in range(10_000):
            ctx.emit(f"line {i}")
        return {}
    chatty = one_node("ui-chatty", talk)
    chatty.run({}, checkpointer=ui.cp, run_id="long-1")
    assert ui.cp.next_seq("long-1") > 10_000
    asked: list[int | None] = []
    real = ui.cp.list_events

    def spy(run_id, since_seq=0, *, kinds=None, limit=None):  # type: ignore[no-untyped-def]
        asked.append(limit)
        return real(run_id, since_seq, kinds=kinds, limit=limit)
    ui.cp.list_events = spy  # type: ignore[method-assign]
    first = ui.get("/runs/long-1?tab=events").text
    seqs = [int(s) for s in re.findall(r'<tr class="event" data-seq="(\d+)">', first)]
    assert seqs == list(range(1, 101))
    assert 'id="next-page" href="?tab=events&amp;since=100&amp;kind="' in first
    later = ui.get("/runs/long-1?tab=events&since=9950").text
    seqs = [int(s) for s in re.findall(r'<tr class="event" data-seq="(\d+)">', later)]
    assert seqs == list(range(9951, 10_004 + 1))[:len(seqs)] and seqs[0] == 9951
    assert asked and all(limit == 101 for limit in asked)  # one page (+1), never the run
    asked.clear()
    opened = ui.get("/runs/long-1").text  # the timeline: drawn from one window of events
    assert asked == [2001]
    assert 'id="more"' in opened and "?tab=events&amp;since=2000" in opened
    transcript = ui.get("/runs/long-1?tab=transcript&since=2000").text
    assert "#2001 " in transcript and "#4001 " not in transcript
    assert 'id="next-page" href="?tab=transcript&amp;since=4000"' in transcript
    assert 'id="prev-page" href="?tab=transcript&amp;since=0"' in transcript


def test_every_page_escapes_run_values(start_inspector: StartInspector, db_url: str) -> None:
    """Model output, step results and a person's question hold markup: every page shows
    it as text."""
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui.cp, "xss-1")
    agent_flow(XSS).run({"input": XSS}, checkpointer=ui.cp, run_id="xss-2")
    pages = ["/runs", "/inbox", "/runs?fragment=rows", "/inbox?fragment=items"]
    for run_id in ("xss-1", "xss-2"):
        pages += [f"/runs/{run_id}?tab={tab}" for tab in ("timeline", "transcript", "state",
                                                           "events")]
        pages += [f"/runs/{run_id}?fragment=header", f"/runs/{run_id}?tab=state&step=1"]
    shown = 0
    for path in pages:
        body = ui.get(path).text
        assert "<script>window.__xss" not in body, path
        assert "<img src=x" not in body and "onerror=\"window" not in body, path
        shown += body.count("&lt;script&gt;window.__xss")
    assert shown >= 10  # the text is there, escaped
    assert "&lt;script&gt;window.__xss" in ui.get("/runs/xss-2?tab=transcript").text


def test_no_api_key_reaches_a_page(start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url)
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0"

    def call(ctx):  # type: ignore[no-untyped-def]
        ctx.step("call_api", lambda: f"Authorization: Bearer {key}")
        return {"api_key": key, "note": f"used {key}"}
    leaky = one_node("ui-leaky", call)
    leaky.run({}, checkpointer=ui.cp, run_id="leak-1")
    for tab in ("timeline", "transcript", "state", "events"):
        body = ui.get(f"/runs/leak-1?tab={tab}").text
        assert key not in body, tab
    assert "[redacted]" in ui.get("/runs/leak-1?tab=state").text


def test_a_jsonl_store_works_the_same(start_inspector: StartInspector, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"jsonl:///{tmp_path / 'journal'}"
    ui = start_inspector(url, flows=(approval,))
    _paused(ui.cp, "j-1")
    assert _rows(ui.get("/runs?status=paused").text) == ["j-1"]
    assert ui.get("/inbox?format=json").json()["inbox"][0]["run_id"] == "j-1"
    assert ui.post("/runs/j-1/approve").status_code == 303
    ui.finished("j-1")
    assert _rows(ui.get("/runs?status=completed").text) == ["j-1"]
    assert "run finished after 3 node(s)" in ui.get("/runs/j-1?tab=transcript").text
    assert 'data-seq="1"' in ui.get("/runs/j-1?tab=events").text
    assert "lease" not in ui.get("/runs/j-1?fragment=header").text  # released when it ended
