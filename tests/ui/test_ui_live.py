"""Live fragments as server-sent events over real HTTP: the stream sends the fragment at
once, then again only when the store changed; a deleted run ends it; every line of a
fragment is a data line (no markup from a run can forge an event)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
from ui_flows import ENTERED, GATE, approval, gated
from ui_server import StartInspector

from purpose_agent.ui.live import sse


def _events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])


def test_the_runs_rows_are_pushed_when_a_run_changes(start_inspector: StartInspector,
                                                     db_url: str) -> None:
    ui = start_inspector(db_url)
    GATE.clear()
    ENTERED.clear()
    worker = threading.Thread(target=gated.run, args=({},),
                              kwargs={"checkpointer": ui.cp, "run_id": "live-1"})
    worker.start()
    try:
        assert ENTERED.wait(30)
        with httpx.Client(base_url=ui.base, timeout=30) as client, client.stream(
                "GET", "/runs?fragment=rows&stream=1") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response.iter_lines())
            kind, first = next(events)
            assert kind == "fragment"
            assert 'data-run="live-1"' in first and ">running<" in first
            assert "<html" not in first
            GATE.set()  # the run completes: the next event says so
            kind, second = next(events)
            assert kind == "fragment" and ">completed<" in second
    finally:
        GATE.set()
        worker.join(30)


def test_a_deleted_run_ends_its_stream(start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    approval.run({}, checkpointer=ui.cp, run_id="gone-1")
    with httpx.Client(base_url=ui.base, timeout=30) as client, client.stream(
            "GET", "/runs/gone-1?fragment=header&stream=1") as response:
        events = _events(response.iter_lines())
        kind, header = next(events)
        assert kind == "fragment" and 'data-state="paused:' in header
        assert ui.cp.delete_run("gone-1")
        kind, why = next(events)
        assert kind == "gone" and "gone-1" in why
        assert list(events) == []  # the stream ended


def test_a_fragment_cannot_forge_an_event() -> None:
    text = 'a\n\nevent: gone\ndata: x\r\nb\rc'
    assert sse("fragment", text) == (
        "event: fragment\ndata: a\ndata: \ndata: event: gone\ndata: data: x\ndata: b\n"
        "data: c\n\n")
