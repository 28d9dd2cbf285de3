"""A run's waterfall, as a pure function of its events (like its transcript).

Bars: node executions (one per attempt), durable steps and tool calls (``tool.call`` →
``tool.result``), model calls (``model.request`` → ``model.response``); and, on a lane
of their own, the time the run waited for a person (a pause until its resume) and the
time it stood still after a crash or a failure (until someone resumed it). Waiting can
last hours while the work took milliseconds, so waits are drawn shortened, with their
real duration written on them: the scale is the scale of the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from purpose_agent.runtime.events import EventKind, PAEvent

# A wait or stop is drawn as at most this share of the work's length (its real
# duration is in its label).
WAIT_SHARE = 0.08


@dataclass(slots=True)
class Bar:
    """One bar of the waterfall. ``kind``: node, step, model, wait, stopped."""

    kind: str
    label: str
    start: float
    end: float
    seq: int
    depth: int = 0
    note: str = ""
    open: bool = False  # still going when the events end
    left: float = 0.0   # position and width in percent of the drawing, set by layout()
    width: float = 0.0

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(slots=True)
class Timeline:
    bars: list[Bar] = field(default_factory=list)
    work_seconds: float = 0.0
    waited_seconds: float = 0.0
    stopped_seconds: float = 0.0


def duration_text(seconds: float) -> str:
    """``850 µs``, ``12.3 ms``, ``4.20 s``, ``3m 05s``, ``2h 01m``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def build(events: Iterable[PAEvent], *, now: float | None = None) -> Timeline:
    """The run's bars, in the order they started. A wait or stop still going (the run is
    paused now) lasts until ``now`` when it is given."""
    bars: list[Bar] = []
    node: Bar | None = None
    steps: dict[str, list[Bar]] = {}
    model: Bar | None = None
    stop: Bar | None = None
    last_ts: float | None = None

    def close_open(ts: float, note: str) -> None:
        nonlocal node, model
        for bar in [b for open_bars in steps.values() for b in open_bars] + [model, node]:
            if bar is not None:
                bar.end, bar.note, bar.open = ts, note, False
        steps.clear()
        node = model = None

    for event in sorted(events, key=lambda e: e.seq):
        kind, p, ts = str(event.kind), event.payload, event.ts
        if kind == EventKind.NODE_STARTED:
            attempt = p.get("attempt") or 1
            node = Bar("node", (event.node or "?") + (f" (attempt {attempt})" if attempt > 1
                                                       else ""), ts, ts, event.seq, open=True)
            bars.append(node)
        elif kind == EventKind.STEP_STARTED:
            bar = Bar("step", str(p.get("step")), ts, ts, event.seq, depth=1, open=True)
            steps.setdefault(str(p.get("step")), []).append(bar)
            bars.append(bar)
        elif kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
            waiting = steps.get(str(p.get("step"))) or []
            if waiting:
                bar = waiting.pop(0)
                bar.end, bar.open = ts, False
                if kind == EventKind.STEP_FAILED:
                    bar.kind, bar.note = "error", f"{p.get('error')}: {p.get('message')}"
        elif kind == EventKind.MODEL_REQUEST:
            model = Bar("model", f"model {p.get('model')}", ts, ts, event.seq, depth=2,
                        open=True)
            bars.append(model)
        elif kind == EventKind.MODEL_RESPONSE and model is not None:
            model.end, model.open = ts, False
            usage = p.get("usage") or {}
            if usage.get("total_tokens"):
                model.note = f"{usage['total_tokens']} tokens"
            if p.get("error"):
                model.kind, model.note = "error", str(p.get("error"))
            model = None
        elif kind in (EventKind.NODE_COMPLETED, EventKind.NODE_FAILED) and node is not None:
            node.end, node.open = ts, False
            if kind == EventKind.NODE_FAILED:
                node.kind, node.note = "error", f"{p.get('error')}: {p.get('message')}"
            node = None
        elif kind == EventKind.RUN_PAUSED:
            close_open(ts, "paused")
            what = ("in doubt: waiting for a person" if p.get("reason") == "in_doubt"
                    else "waiting for a person")
            stop = Bar("wait", what, ts, ts, event.seq, open=True)
            bars.append(stop)
        elif kind == EventKind.RUN_ERROR:
            close_open(ts, "failed")
            stop = Bar("stopped", "failed: stopped until resumed", ts, ts, event.seq,
                       open=True)
            bars.append(stop)
        elif kind == EventKind.RUN_RESUMED:
            if stop is None and last_ts is not None:
                # Resumed without a pause or failure before it: the process advancing the
                # run died; whatever was in flight ended with its last event.
                close_open(last_ts, "process died")
                stop = Bar("stopped", "process died: stopped until resumed", last_ts,
                           last_ts, event.seq)
                bars.append(stop)
            if stop is not None:
                stop.end, stop.open = ts, False
                stop.note = f"resumed ({p.get('previous')})"
            stop = None
        elif kind in (EventKind.RUN_FINISHED, EventKind.RUN_CANCELLED):
            close_open(ts, "cancelled" if kind == EventKind.RUN_CANCELLED else "")
        last_ts = ts
    end = last_ts or 0.0
    for bar in bars:
        if bar.open:
            waits = bar.kind in ("wait", "stopped") and now is not None
            bar.end = max(bar.end, now if waits and now is not None else end)
    return layout(bars)


def layout(bars: list[Bar]) -> Timeline:
    """Place the bars: work to scale, waits and stops shortened to WAIT_SHARE."""
    timeline = Timeline(bars)
    if not bars:
        return timeline
    gaps = sorted((b for b in bars if b.kind in ("wait", "stopped")), key=lambda b: b.start)
    t0 = min(b.start for b in bars)
    t1 = max(b.end for b in bars)
    gap_total = sum(b.duration for b in gaps)
    work = max(t1 - t0 - gap_total, 0.0)
    drawn_gap = (work or 1.0) * WAIT_SHARE
    timeline.work_seconds = work
    timeline.waited_seconds = sum(b.duration for b in gaps if b.kind == "wait")
    timeline.stopped_seconds = sum(b.duration for b in gaps if b.kind == "stopped")

    def drawn(t: float) -> float:
        out = t - t0
        for gap in gaps:
            if t <= gap.start:
                break
            inside = min(t, gap.end) - gap.start
            out -= inside - (drawn_gap * inside / gap.duration if gap.duration else 0.0)
        return out

    total = drawn(t1) or 1.0
    for bar in bars:
        left = drawn(bar.start) / total * 100
        bar.left = round(min(max(left, 0.0), 99.5), 3)
        bar.width = round(max((drawn(bar.end) - drawn(bar.start)) / total * 100, 0.3), 3)
        bar.width = min(bar.width, round(100 - bar.left, 3))
    return timeline


__all__ = ["Bar", "Timeline", "build", "duration_text", "layout"]
