"""How the command line shows runs, states and events.

Everything a run holds came from user code, a model or a tool: it is untrusted text and
is always handed to rich through :func:`literal` (never parsed as markup, control
characters shown as escapes).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import RunInfo
from purpose_agent.runtime.owners import lease_status
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.state import RunState, RunStatus
from purpose_agent.runtime.transcript import transcript_lines
from purpose_agent.runtime.usage import usage_text


def cursor_text(info: RunInfo) -> str:
    """A listing's page cursor as text (``runs --after``, the inspector's URLs): the
    listing key of the last run of a page."""
    return f"{info.updated_at!r}:{info.run_id}"


def parse_cursor(text: str) -> tuple[float, str] | None:
    """A cursor from :func:`cursor_text` (None for ""); ValueError if it is not one."""
    if not text:
        return None
    when, sep, run_id = text.partition(":")
    updated_at = float(when)
    if not sep or not run_id or updated_at != updated_at or abs(updated_at) == float("inf"):
        raise ValueError(f"not a page cursor: {text!r}")
    return updated_at, run_id


STATUS_STYLE = {
    RunStatus.PENDING: "blue", RunStatus.RUNNING: "cyan", RunStatus.PAUSED: "yellow",
    RunStatus.COMPLETED: "green", RunStatus.FAILED: "red", RunStatus.CANCELLED: "dim",
}
_KIND_STYLE = {
    EventKind.NODE_STARTED: "bold cyan", EventKind.NODE_COMPLETED: "green",
    EventKind.NODE_FAILED: "red", EventKind.STEP_FAILED: "red", EventKind.RUN_ERROR: "bold red",
    EventKind.HITL_REQUEST: "yellow", EventKind.HITL_RESPONSE: "yellow",
    EventKind.RUN_PAUSED: "bold yellow", EventKind.RUN_FINISHED: "bold green",
    EventKind.STEP_STARTED: "dim", EventKind.STEP_COMPLETED: "dim",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` with terminal control characters (ESC, CR, …) shown as ``\\x1b`` escapes:
    a model's output must not be able to drive the terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def literal(text: object, style: str = "", **options: Any) -> Text:
    """Untrusted text for rich: never parsed as markup, control characters made visible."""
    return Text(clean(str(text)), style=style, **options)


def relative_time(ts: float, now: float | None = None) -> str:
    """``3s ago``, ``5m ago``, ``2h ago``, ``4d ago``."""
    delta = max(0.0, (now if now is not None else time.time()) - ts)
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= seconds:
            return f"{int(delta // seconds)}{unit} ago"
    return f"{int(delta)}s ago"


def truncate(value: Any, *, text_limit: int = 200, items: int = 20) -> Any:
    """A copy of ``value`` whose long strings and lists are cut short, for display."""
    if isinstance(value, str):
        extra = len(value) - text_limit
        return value if extra <= 0 else f"{value[:text_limit]}… (+{extra} chars)"
    if isinstance(value, dict):
        out = {k: truncate(v, text_limit=text_limit, items=items)
               for k, v in list(value.items())[:items]}
        if len(value) > items:
            out["…"] = f"{len(value) - items} more keys"
        return out
    if isinstance(value, list):
        head = [truncate(v, text_limit=text_limit, items=items) for v in value[:items]]
        return head + ([f"… {len(value) - items} more items"] if len(value) > items else [])
    return value


def pretty_json(value: Any) -> str:
    """Indented JSON of ``value`` with long values truncated (non-ASCII kept readable)."""
    return json.dumps(truncate(value), indent=2, ensure_ascii=False)


def lease_text(owner: str | None, expires_at: float | None) -> str:
    """Who holds the run's lease, and whether it is live (as the store would judge now)."""
    now = time.time()
    status = lease_status(owner, expires_at, now)
    if status == "free":
        return "none"
    if status == "gone":
        return f"{owner} (that process is gone: the run can be resumed)"
    if status == "expired":
        return f"{owner} (expired: the run can be resumed)"
    assert expires_at is not None
    return f"{owner} (live, {expires_at - now:.0f}s left)"


def stalled(info: RunInfo) -> bool:
    """True for a RUNNING run that nobody advances (its process died or its lease expired)."""
    return info.status is RunStatus.RUNNING and lease_status(
        info.owner, info.lease_expires_at, time.time()) != "live"


def wait_text(pending: dict[str, Any] | None, *, short: bool = False) -> str | None:
    """What a parked run waits for, in words ("sleeping until 2026-12-01 09:00:00 UTC"),
    or None when it waits for no timer or message. ``short``: for a table cell."""
    pending = pending or {}
    kind = pending.get("kind")
    if kind == "child":
        return f"waiting for child run {pending.get('run_id')}"
    if short and kind in ("sleep", "message"):
        return (f"sleeping until {utc_text(pending.get('wake_at'))}" if kind == "sleep"
                else f"waits for {pending.get('topic')!r}")
    if kind == "sleep":
        why = " (retry backoff)" if pending.get("reason") == "retry" else ""
        return f"sleeping until {utc_text(pending.get('wake_at'))}{why}"
    if kind == "message":
        until = pending.get("deadline")
        return (f"waiting for message {pending.get('topic')!r}"
                + (f" until {utc_text(until)}" if until is not None else ""))
    return None


def utc_text(ts: Any) -> str:
    """An epoch time as ``2026-12-01 09:00:00 UTC``."""
    if not isinstance(ts, (int, float)):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def run_row(info: RunInfo) -> dict[str, Any]:
    """The stable JSON form of one row of ``purpose-agent runs``."""
    return {
        "run_id": info.run_id, "flow": info.flow, "status": str(info.status),
        "current_node": info.current_node, "executions": info.current_step,
        "steps": info.current_step,  # the earlier name of "executions", kept for scripts
        "updated_at": info.updated_at, "created_at": info.created_at,
        "purpose": info.purpose, "waiting_for": (info.pending or {}).get("kind"),
        "owner": info.owner, "stalled": stalled(info), "parent": info.parent,
        "wakes_at": _wakes_at(info.pending),
    }


def _wakes_at(pending: dict[str, Any] | None) -> float | None:
    pending = pending or {}
    if pending.get("kind") == "sleep":
        return pending.get("wake_at")
    if pending.get("kind") == "child":
        return None
    return pending.get("deadline") if pending.get("kind") == "message" else None


def runs_table(infos: list[RunInfo], width: int) -> Table:
    """The table of ``purpose-agent runs``, fitted to ``width`` columns: the id is never
    cut (people copy it); the purpose gets what is left, or is left out."""
    now = time.time()
    rows = []
    for info in infos:
        status = literal(str(info.status), style=STATUS_STYLE.get(info.status, ""))
        waiting = wait_text(info.pending, short=True)
        if waiting is not None:
            status.append(f" ({waiting})")
        elif info.pending:
            status.append(f" ({'in doubt' if info.pending.get('kind') == 'in_doubt' else 'asks'})")
        elif stalled(info):
            status.append(" (stalled)")
        rows.append([literal(info.run_id), literal(info.flow or "-"), status,
                     literal(info.current_node or "-"), literal(str(info.current_step)),
                     literal(relative_time(info.updated_at, now)), literal(info.purpose or "")])
    names = ("id", "flow", "status", "current node", "executions", "updated", "purpose")
    caps = (None, 24, None, 20, None, None, None)
    widths = [max([len(names[i])] + [row[i].cell_len for row in rows]) for i in range(len(names))]
    widths = [min(w, cap) if cap else w for w, cap in zip(widths, caps, strict=True)]
    left = width - sum(widths[:-1]) - 3 * (len(names) - 1)
    keep = len(names) if left >= 12 else len(names) - 1
    widths[-1] = max(0, min(widths[-1], left))
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for i in range(keep):
        table.add_column(names[i], width=widths[i], no_wrap=i != 0,
                         overflow="fold" if i == 0 else "ellipsis",
                         justify="right" if names[i] == "executions" else "left")
    for row in rows:
        table.add_row(*row[:keep])
    return table


def print_state(console: Console, state: RunState, info: RunInfo | None,
                usage: dict[str, Any] | None = None, children: list[str] | None = None) -> None:
    """The body of ``purpose-agent show``; ``usage`` is the run's model usage,
    ``children`` the runs it started with ``ctx.run_child``."""
    def field(name: str, value: str | Text) -> None:
        line = literal(f"{name:<14}", style="bold")
        line.append(value if isinstance(value, Text) else literal(value))
        console.print(line)

    field("run", state.run_id)
    field("status", literal(str(state.status), style=STATUS_STYLE.get(state.status, "")))
    field("flow", f"{state.flow or '-'}  ({state.flow_ref or 'no importable reference'})")
    if state.purpose:
        field("purpose", state.purpose)
    field("current node", f"{state.current_node or '-'}  (after node execution "
                          f"{state.current_step})")
    field("updated", f"{relative_time(state.updated_at)}  "
                     f"({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.updated_at))})")
    if info is not None:
        field("lease", lease_text(info.owner, info.lease_expires_at))
        if info.cancel_requested and state.status is RunStatus.RUNNING:
            field("cancel", "requested: stops at the next node boundary")
    if state.parent and state.parent.get("kind") == "child":
        field("child of", f"{state.parent.get('run_id')} (node execution "
                          f"{state.parent.get('step')})")
    elif state.parent:
        field("forked from", f"{state.parent.get('run_id')} after node execution "
                             f"{state.parent.get('step')}")
    if children:
        field("children", ", ".join(children))
    field("completed", " → ".join(state.completed_nodes) or "none yet")
    if usage is not None:
        field("model usage", usage_text(usage))
    pending = state.pending
    if pending and pending.get("kind") == "interrupt":
        field("waiting for", f"a person's answer in node {pending.get('node')}")
        console.print(literal(pretty_json(pending.get("payload")), style="yellow"))
    elif wait_text(pending) is not None:
        field("waiting", str(wait_text(pending)))
    elif pending and pending.get("kind") == "in_doubt":
        field("in doubt", f"step {pending.get('name')} in node {pending.get('node')} started "
                          "but its result was never journaled: it may or may not have happened")
    if state.error:
        err = state.error
        field("error", literal(f"{err.get('type')}: {err.get('message')} (node "
                               f"{err.get('node')}, attempt {err.get('attempt')})", style="red"))
        if err.get("traceback"):
            field("traceback", literal("of the last attempt:", style="dim"))
            console.print(literal(str(err["traceback"]).rstrip(), style="dim"))
    console.print(literal("data", style="bold"))
    console.print(literal(pretty_json(state.data)))


def state_json(state: RunState, info: RunInfo | None,
               usage: dict[str, Any] | None = None,
               children: list[str] | None = None) -> dict[str, Any]:
    """The stable JSON form of ``purpose-agent show --json`` (the state, lease, model
    usage and child runs added)."""
    out = state.to_dict()
    out.pop("tool_cache", None)
    out["owner"] = info.owner if info else None
    out["lease_expires_at"] = info.lease_expires_at if info else None
    out["cancel_requested"] = info.cancel_requested if info else False
    out["usage"] = usage
    out["children"] = children or []
    return out


# Fixed widths (not fitted to the rows), so rows printed one by one as they are
# committed (``events --follow``) line up with the header and read as one table.
_EVENT_COLUMNS = (("seq", 5, "right"), ("time", 8, "left"), ("kind", 14, "left"),
                  ("node", 16, "left"))


def events_table(events: list[PAEvent], width: int = 120, *, header: bool = True) -> Table:
    """The table of ``purpose-agent events`` (``header=False``: rows only, to stream)."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold", show_header=header)
    for name, size, justify in _EVENT_COLUMNS:
        table.add_column(name, width=size, no_wrap=True, overflow="ellipsis",
                         justify=justify)  # type: ignore[arg-type]
    rest = width - sum(size for _n, size, _j in _EVENT_COLUMNS) - 3 * len(_EVENT_COLUMNS)
    table.add_column("payload", width=max(rest, 20), overflow="fold")
    for event in events:
        table.add_row(str(event.seq), time.strftime("%H:%M:%S", time.localtime(event.ts)),
                      literal(str(event.kind), style=_KIND_STYLE.get(event.kind, "")),
                      literal(event.node or "-"), literal(summarize(event.payload, 160)))
    return table


def event_line(event: PAEvent) -> Text | None:
    """One progress line for a live run (the transcript's wording), or None."""
    if event.kind == EventKind.STEP_STARTED and len(str(event.payload.get("args"))) > 60:
        # Long arguments (whole log excerpts, drafts) drown the progress; `events` and
        # `transcript` show them.
        event = replace(event, payload={**event.payload, "args": "…"})
    lines = transcript_lines([event])
    if not lines:
        return None
    return literal(lines[0], style=_KIND_STYLE.get(event.kind, ""))


class EventTail:
    """Prints a run's new events as they are committed, from a background thread.

    Used as a context manager around a blocking ``flow.run`` / ``flow.resume``;
    :meth:`drain` prints whatever is committed now (safe from any thread).
    """

    def __init__(self, cp: BaseCheckpointer, run_id: str, emit: Callable[[PAEvent], None],
                 *, since: int = 0, interval: float = 0.1) -> None:
        self.cp, self.run_id, self.emit = cp, run_id, emit
        self.seq = since
        self.seen: list[PAEvent] = []
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="purpose-cli-tail", daemon=True)

    def drain(self) -> None:
        with self._lock:
            for event in self.cp.list_events(self.run_id, since_seq=self.seq):
                self.seq = event.seq
                self.seen.append(event)
                self.emit(event)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain()
            except Exception:  # a busy store read: the next poll (or the final drain) shows it
                continue

    def __enter__(self) -> EventTail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self.drain()


__all__ = [
    "EventTail",
    "clean",
    "event_line",
    "events_table",
    "lease_text",
    "literal",
    "pretty_json",
    "print_state",
    "relative_time",
    "run_row",
    "runs_table",
    "stalled",
    "state_json",
    "truncate",
]
