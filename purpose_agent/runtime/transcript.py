"""A readable transcript of a run, as a pure function of its events.

Nothing here reads a store or the run state: give it the events (all of them, or those
after some seq) and it renders the same text every time. The text is plain; whoever
shows it (terminal, HTML) escapes it for that medium.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.usage import money, usage_text, usage_totals


def _line(event: PAEvent) -> str | None:
    p: dict[str, Any] = event.payload
    # EventKind(...) also names the kinds of older journals (agent.*, tool.*) as today's.
    kind, node = _current_kind(event.kind), event.node or ""
    if kind == EventKind.RUN_STARTED:
        return f"run started: flow {p.get('flow')!s}" + (
            f" — {p['purpose']}" if p.get("purpose") else "")
    if kind == EventKind.RUN_RESUMED:
        edited = f", data edited: {', '.join(p['updated'])}" if p.get("updated") else ""
        return f"run resumed (was {p.get('previous')}{edited})"
    if kind == EventKind.RUN_PAUSED:
        if p.get("reason") == "in_doubt":
            return f"run paused: step {p.get('step_name')} in {node} is in doubt"
        return f"run paused at {node}, waiting for a person"
    if kind == EventKind.RUN_FINISHED:
        # "steps" is what releases before 0.2 called the number of node executions.
        return f"run finished after {p.get('executions', p.get('steps'))} node(s)"
    if kind == EventKind.RUN_ERROR:
        return (f"run failed in {p.get('node') or node} (attempt {p.get('attempt')}): "
                f"{p.get('type')}: {p.get('message')}")
    if kind == EventKind.RUN_CANCELLED:
        return "run cancelled"
    if kind == EventKind.RUN_FORKED:
        at = p.get("at_execution", p.get("at_step"))
        return f"forked from run {p.get('from_run')} after node execution {at}"
    if kind == EventKind.NODE_STARTED:
        attempt = p.get("attempt", 1)
        return f"▶ {node}" + (f" (attempt {attempt})" if attempt and attempt > 1 else "")
    if kind == EventKind.NODE_COMPLETED:
        replayed = p.get("replayed_steps") or 0
        extra = f"; {replayed} step(s) replayed from the journal" if replayed else ""
        updated = ", ".join(p.get("updated") or []) or "nothing"
        return f"✓ {node} updated {updated}{extra}"
    if kind == EventKind.NODE_FAILED:
        return f"✗ {node} attempt {p.get('attempt')}: {p.get('error')}: {p.get('message')}"
    if kind == EventKind.NODE_PROGRESS:
        rest = {k: v for k, v in p.items() if k != "message"}
        return f"  {node}: {p.get('message')}" + (f" {summarize(rest, 200)}" if rest else "")
    if kind == EventKind.STEP_STARTED:
        return f"  → {p.get('step')}({p.get('args') or ''})"
    if kind == EventKind.STEP_COMPLETED:
        return f"  ← {p.get('step')}: {p.get('result')}"
    if kind == EventKind.STEP_FAILED:
        return f"  ✗ {p.get('step')}: {p.get('error')}: {p.get('message')}"
    if kind == EventKind.MODEL_REQUEST:
        # The agent records the last message as "last"; "summary" is the older name.
        return f"  model {p.get('model')} ← {p.get('summary') or p.get('last') or ''}"
    if kind == EventKind.MODEL_RESPONSE:
        usage = p.get("usage") or {}
        tokens = f" [{usage.get('total_tokens')} tokens]" if usage.get("total_tokens") else ""
        if isinstance(p.get("cost_usd"), (int, float)):
            cost = f"${money(p['cost_usd'])}"
            tokens = f"{tokens[:-1]}, {cost}]" if tokens else f" [{cost}]"
        said = p.get("summary") or p.get("content") or ""
        if p.get("tool_calls"):
            said = f"{said} " if said else ""
            said += f"calls {', '.join(str(name) for name in p['tool_calls'])}"
        if p.get("error"):
            said = f"{p['error']}: {p.get('message', '')}"
        return f"  model {p.get('model')} → {said}{tokens}"
    if kind == EventKind.STEP_ARGS_CHANGED:
        status = str(p.get("status"))
        what = {"replayed": "replayed its recorded result", "in_doubt": "is in doubt",
                "retried": "runs again"}.get(status, status)
        return f"  ↺ {p.get('step')} {what}, called now with other arguments ({p.get('args')})"
    if kind == EventKind.NODE_SIGNAL_CAUGHT:
        signal = str(p.get("signal")).replace("_", "-")
        return (f"  ⚠ {node}'s code caught its {signal} pause ({p.get('how')}); "
                "the run pauses anyway")
    if kind == EventKind.HITL_REQUEST:
        return f"  ? asks a person: {summarize(p.get('payload'), 300)}"
    if kind == EventKind.HITL_RESPONSE:
        return f"  ! a person answered: {p.get('answer')}"
    return f"  {kind}: {summarize(p, 200)}" if p else f"  {kind}"


def _current_kind(kind: EventKind | str) -> str:
    try:
        return str(EventKind(kind))
    except ValueError:
        return str(kind)  # a kind of a newer release: shown as it is


def transcript_lines(events: Iterable[PAEvent], *, timestamps: bool = False) -> list[str]:
    """One line per event worth reading, in seq order, prefixed ``#seq`` (a failed run's
    ``run.error`` is followed by its node's traceback, indented)."""
    out = []
    for event in sorted(events, key=lambda e: e.seq):
        text = _line(event)
        if text is None:
            continue
        stamp = time.strftime("%H:%M:%S ", time.localtime(event.ts)) if timestamps else ""
        out.append(f"{stamp}#{event.seq:<4} {text}")
        tb = event.payload.get("traceback") if event.kind == EventKind.RUN_ERROR else None
        if isinstance(tb, str) and tb:
            # The failed node's traceback, under its line (indented past "#seq ").
            out.extend(f"{' ' * (len(stamp) + 6)}{line}" for line in tb.rstrip().splitlines())
    return out


def render_transcript(events: Iterable[PAEvent], *, timestamps: bool = False) -> str:
    """The transcript of a run as text (empty string for no events), ending with the
    run's model usage when it made model calls."""
    events = list(events)
    lines = transcript_lines(events, timestamps=timestamps)
    if (totals := usage_totals(events)) is not None:
        lines.append(f"usage: {usage_text(totals)}")
    return "\n".join(lines) + ("\n" if lines else "")


__all__ = ["render_transcript", "transcript_lines"]
