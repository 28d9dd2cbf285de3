"""What each page shows, read through the store's public API only.

Everything here returns plain data for the templates (which escape it). Values from a
run go through the same code the command line uses: :func:`redact` for data and event
payloads, :func:`transcript_lines` for the transcript, :func:`usage_totals` for model
usage, ``load_at`` / ``list_history`` for the state after a node execution.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from purpose_agent.cli.render import (
    cursor_text,
    lease_text,
    parse_cursor,
    relative_time,
    run_row,
    stalled,
    wait_text,
)
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import RunInfo
from purpose_agent.runtime.redact import redact
from purpose_agent.runtime.state import RunState, RunStatus
from purpose_agent.runtime.transcript import transcript_lines
from purpose_agent.runtime.usage import usage_text, usage_totals

from . import timeline

RUNS_PAGE = 50
EVENTS_PAGE = 100
WINDOW_EVENTS = 2000  # events a timeline or transcript is drawn from at a time
INBOX_LIMIT = 500


def pretty(value: Any) -> str:
    """Indented JSON of a run's value, redacted as the command line redacts."""
    return json.dumps(redact(value), indent=2, ensure_ascii=False, sort_keys=False)


# ── runs ──────────────────────────────────────────────────────────────────────────────
@dataclass(slots=True)
class RunsPage:
    rows: list[dict[str, Any]]
    after: str  # the cursor this page starts after ("" for the newest runs)
    next_after: str  # the cursor of the next page ("" when this is the last)
    status: str | None
    flow: str
    q: str
    flows: list[str] = field(default_factory=list)


def row_of(info: RunInfo) -> dict[str, Any]:
    """``purpose-agent runs --json``'s row, plus what the page needs."""
    row = run_row(info)
    pending = info.pending or {}
    row["waiting"] = ("in doubt" if pending.get("kind") == "in_doubt"
                      else "asks a person" if pending.get("kind") == "interrupt"
                      else wait_text(pending, short=True) or "")
    row["updated"] = relative_time(info.updated_at)
    row["live"] = info.status in (RunStatus.RUNNING, RunStatus.PENDING) and not stalled(info)
    return row


def runs_page(cp: BaseCheckpointer, *, status: RunStatus | None, flow: str, q: str,
              after: str = "", size: int = RUNS_PAGE) -> RunsPage:
    """One page of runs, newest first, after the cursor ``after``: the store filters
    (status, flow, run-id search) and pages by key, so a page costs a page however many
    runs the store holds, and paging never repeats or skips a run."""
    infos = cp.list_run_infos(status=status, flow=flow or None, search=q or None,
                              after=parse_cursor(after), limit=size + 1)
    window = infos[:size]
    return RunsPage([row_of(i) for i in window], after,
                    cursor_text(window[-1]) if len(infos) > size else "",
                    str(status) if status else None, flow, q,
                    sorted({i.flow for i in window if i.flow}))


# ── inbox ─────────────────────────────────────────────────────────────────────────────
@dataclass(slots=True)
class InboxItem:
    run_id: str
    flow: str | None
    kind: str  # "interrupt" | "in_doubt"
    node: str | None
    question: str
    payload: str
    step_name: str | None
    updated: str
    edit: str  # the data keys the question shows, as a JSON object to edit


def inbox(cp: BaseCheckpointer, *, limit: int = INBOX_LIMIT) -> list[InboxItem]:
    """Every paused run's question, newest first."""
    return [inbox_item(info, cp.load_latest(info.run_id))
            for info in cp.list_run_infos(status=RunStatus.PAUSED, limit=limit)
            if asks_a_person(info)]


def asks_a_person(info: RunInfo) -> bool:
    """A paused run waits for a person (a question, a step in doubt), not for a timer or
    a message (ctx.sleep, ctx.wait_for: nothing for a person to answer)."""
    return (info.pending or {}).get("kind") in ("interrupt", "in_doubt")


def inbox_item(info: RunInfo, state: RunState | None) -> InboxItem:
    pending = info.pending or {}
    payload = pending.get("payload")
    question = payload.get("question") if isinstance(payload, dict) else None
    kind = str(pending.get("kind") or "")
    if kind == "in_doubt":
        question = (f"step {pending.get('name')} in node {pending.get('node')} started but "
                    "its result was never journaled: did it happen?")
    return InboxItem(info.run_id, info.flow, kind, pending.get("node"),
                     str(question or "a person is asked"), pretty(payload),
                     pending.get("name"), relative_time(info.updated_at),
                     edit_template(payload, state))


def edit_template(payload: Any, state: RunState | None) -> str:
    """The data a person will likely edit: the run's data keys the question shows (a
    draft, the arguments of a tool call), as a JSON object; ``{}`` when none."""
    if state is None or not isinstance(payload, dict):
        return "{}"
    keys = {k: state.data[k] for k in payload if k in state.data
            and redact(state.data[k]) == state.data[k]}  # never prefill a redacted value
    return json.dumps(keys, indent=2, ensure_ascii=False)


# ── one run ───────────────────────────────────────────────────────────────────────────
@dataclass(slots=True)
class RunHeader:
    info: RunInfo
    state: RunState
    row: dict[str, Any]
    item: InboxItem | None
    error: str | None
    parent: dict[str, Any] | None
    lease: str


def run_header(cp: BaseCheckpointer, run_id: str) -> RunHeader | None:
    info = cp.run_info(run_id)
    state = cp.load_latest(run_id)
    if info is None or state is None:
        return None
    item = inbox_item(info, state) if info.status is RunStatus.PAUSED and asks_a_person(info) \
        else None
    err = state.error
    error = (f"{err.get('type')}: {err.get('message')} (node {err.get('node')}, attempt "
             f"{err.get('attempt')})" if err else None)
    return RunHeader(info, state, row_of(info), item, error, state.parent,
                     lease_text(info.owner, info.lease_expires_at))


def transcript(events: list[PAEvent]) -> dict[str, Any]:
    """The transcript as ``purpose-agent transcript`` prints it, and the model calls'
    token usage, per call and for the run."""
    calls = []
    for event in events:
        if event.kind != EventKind.MODEL_RESPONSE:
            continue
        p, usage = event.payload, event.payload.get("usage") or {}
        calls.append({"seq": event.seq, "node": event.node, "model": p.get("model"),
                      "turn": p.get("turn"), "input": usage.get("input_tokens"),
                      "output": usage.get("output_tokens"), "total": usage.get("total_tokens"),
                      "latency_ms": p.get("latency_ms"), "cost": p.get("cost_usd"),
                      "error": p.get("error")})
    totals = usage_totals(events)
    return {"lines": transcript_lines(events, timestamps=True), "calls": calls,
            "totals": totals, "totals_text": usage_text(totals) if totals else None}


@dataclass(slots=True)
class Window:
    """Which events a tab was drawn from: seqs after ``since``, ``next_since`` when more
    follow (the tab shows a link to them)."""

    since: int
    next_since: int | None
    size: int


def _window(cp: BaseCheckpointer, run_id: str, since: int,
            size: int) -> tuple[list[PAEvent], Window]:
    found = cp.list_events(run_id, since_seq=since, limit=size + 1)
    shown = found[:size]
    return shown, Window(since, shown[-1].seq if len(found) > size else None, size)


def timeline_window(cp: BaseCheckpointer, run_id: str, *,
                    size: int = WINDOW_EVENTS) -> tuple[timeline.Timeline, Window]:
    """The waterfall of the run's first ``size`` events: a long run's page opens at the
    cost of one window, not of its whole journal."""
    events, window = _window(cp, run_id, 0, size)
    return timeline.build(events, now=time.time()), window


def transcript_window(cp: BaseCheckpointer, run_id: str, *, since: int,
                      size: int = WINDOW_EVENTS) -> tuple[dict[str, Any], Window]:
    """The transcript of ``size`` events after seq ``since``; the run's total model usage
    comes from all of its ``model.response`` events."""
    events, window = _window(cp, run_id, since, size)
    out = transcript(events)
    if since > 0 or window.next_since is not None:
        totals = usage_totals(cp.list_events(run_id, kinds=[EventKind.MODEL_RESPONSE.value]))
        out["totals"], out["totals_text"] = totals, usage_text(totals) if totals else None
    return out, window


@dataclass(slots=True)
class StateView:
    steps: list[dict[str, Any]]
    step: int
    data: str
    diff: list[dict[str, str]]
    node: str | None
    edit: str


def state_view(cp: BaseCheckpointer, run_id: str, step: int | None) -> StateView:
    """The data right after node execution ``step`` (default: the latest) and what that
    execution changed, from ``load_at`` (the store's own state reconstruction)."""
    history = cp.list_history(run_id)
    steps: dict[int, dict[str, Any]] = {0: {"step": 0, "node": None, "status": "start"}}
    for entry in history:
        if entry["node"] is not None:
            steps[entry["step"]] = {"step": entry["step"], "node": entry["node"],
                                    "status": entry["status"]}
    latest = max(steps)
    chosen = latest if step is None or step not in steps else step
    after = cp.load_at(run_id, chosen)
    before = cp.load_at(run_id, chosen - 1) if chosen > 0 else None
    data = after.data if after is not None else {}
    changes = diff(before.data if before is not None else {}, data) if chosen > 0 else []
    return StateView(sorted(steps.values(), key=lambda s: s["step"]), chosen, pretty(data),
                     changes, steps[chosen]["node"], "{}")


def diff(old: Any, new: Any, path: str = "$") -> list[dict[str, str]]:
    """What changed from ``old`` to ``new``: one entry per added, removed or changed
    value (``path``, ``change``, ``old``, ``new``; values redacted). Lists that grew at
    their end show only the items appended."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[dict[str, str]] = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}"
            if key not in new:
                out.append({"path": where, "change": "removed", "old": pretty(old[key]),
                            "new": ""})
            elif key not in old:
                out.append({"path": where, "change": "added", "old": "",
                            "new": pretty(new[key])})
            else:
                out += diff(old[key], new[key], where)
        return out
    if old == new and type(old) is type(new):
        return []
    if isinstance(old, list) and isinstance(new, list) and len(new) > len(old) \
            and new[:len(old)] == old:
        return [{"path": path, "change": f"appended {len(new) - len(old)}", "old": "",
                 "new": pretty(new[len(old):])}]
    return [{"path": path, "change": "changed", "old": pretty(old), "new": pretty(new)}]


@dataclass(slots=True)
class EventsPage:
    rows: list[dict[str, Any]]
    since: int
    next_since: int | None
    prev_since: int | None
    kind: str


def events_page(cp: BaseCheckpointer, run_id: str, *, since: int, kind: str,
                size: int = EVENTS_PAGE) -> EventsPage:
    """One page of raw events after seq ``since``: at most ``size + 1`` are read (the
    extra one says whether there is a next page), whatever the run's length."""
    found = cp.list_events(run_id, since_seq=since, kinds=[kind] if kind else None,
                           limit=size + 1)
    shown = found[:size]
    rows = [{"seq": e.seq, "kind": str(e.kind), "node": e.node or "",
             "time": e.ts, "payload": pretty(e.payload)} for e in shown]
    next_since = shown[-1].seq if len(found) > size else None
    prev_since = max(since - size, 0) if since > 0 and not kind else (0 if since else None)
    return EventsPage(rows, since, next_since, prev_since, kind)


__all__ = ["EVENTS_PAGE", "RUNS_PAGE", "EventsPage", "InboxItem", "RunHeader", "RunsPage",
           "StateView", "Window", "diff", "events_page", "inbox", "inbox_item", "pretty",
           "row_of", "run_header", "runs_page", "state_view", "timeline_window", "transcript",
           "transcript_window"]
