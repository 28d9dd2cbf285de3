"""A run's spans, from its committed events (the engine's observer, see flow/observe.py),
following the OpenTelemetry GenAI semantic conventions.

- ``invoke_workflow {flow}``: one span per run attempt (a start, a resume after a crash,
  a pause or a failure, a worker's claim), linked to the attempt before it, with
  ``gen_ai.conversation.id`` = the run id. A pause for a person ends it without error.
- ``node {name}`` per node execution attempt, ``step {name}`` per durable step,
  ``chat {model}`` (CLIENT) per model call, ``execute_tool {tool}`` per tool call.
- Every span is drawn from the events' own times. Spans come only from events the
  journal holds, committed once: a replayed step or node is never reported again.
- Message contents and tool arguments only with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``, redacted.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.redact import redact
from purpose_agent.runtime.state import RunState

from ._setup import attempt_span_id, ids_for_next_span, run_trace_id, tracer

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TOOL = "tool:"


def capture_content() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(redact(value), ensure_ascii=False)


@dataclass
class _Attempt:
    span: Span
    number: int
    nodes: dict[str, Span] = field(default_factory=dict)
    steps: dict[tuple[str | None, str], Span] = field(default_factory=dict)
    models: dict[str | None, Span] = field(default_factory=dict)


class RunObserver:
    """Turns one driver's committed events into spans (one driver: one run at a time)."""

    def __init__(self, cp: BaseCheckpointer, owner: str) -> None:
        self.cp, self.owner = cp, owner
        self.tracer = tracer()
        self.capture = capture_content()
        self.attempt: _Attempt | None = None
        self._lock = threading.Lock()

    def committed(self, state: RunState, events: Sequence[PAEvent]) -> None:
        with self._lock:
            for event in events:
                self._event(state, event)

    # ── one event ────────────────────────────────────────────────────────────────
    def _event(self, state: RunState, e: PAEvent) -> None:
        kind, p = e.kind, e.payload
        if (kind is EventKind.RUN_STARTED and "queue" not in p) or kind is EventKind.RUN_RESUMED:
            self._begin_attempt(state, e)
            return
        attempt = self.attempt
        if attempt is None:
            return
        if kind is EventKind.NODE_STARTED and e.node:
            self._end(attempt.nodes.pop(e.node, None), e.ts)
            attempt.nodes[e.node] = self._start(
                f"node {e.node}", e, attempt.span, {
                    "purpose_agent.node": e.node, "purpose_agent.step": p.get("execution"),
                    "purpose_agent.attempt": p.get("attempt")})
        elif kind is EventKind.NODE_COMPLETED:
            self._end(attempt.nodes.pop(e.node or "", None), e.ts)
        elif kind is EventKind.NODE_FAILED:
            self._end(attempt.nodes.pop(e.node or "", None), e.ts,
                      error=f"{p.get('error', 'error')}: {p.get('message', '')}")
        elif kind is EventKind.STEP_STARTED:
            self._step_started(attempt, e)
        elif kind in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
            error = (f"{p.get('error')}: {p.get('message', '')}"
                     if kind is EventKind.STEP_FAILED else None)
            self._end(attempt.steps.pop((e.node, str(p.get("step"))), None), e.ts, error=error)
        elif kind is EventKind.MODEL_REQUEST:
            self._model_request(attempt, e)
        elif kind is EventKind.MODEL_RESPONSE:
            self._model_response(attempt, e)
        elif kind in (EventKind.RUN_PAUSED, EventKind.RUN_FINISHED, EventKind.RUN_ERROR,
                      EventKind.RUN_CANCELLED):
            self._end_attempt(attempt, e)

    def _begin_attempt(self, state: RunState, e: PAEvent) -> None:
        if self.attempt is not None:  # a driver's earlier attempt never ended: end it now
            self._end_attempt(self.attempt, e)
        number = self._attempt_number(state.run_id, e.seq)
        trace_id = run_trace_id(state.run_id)
        links = []
        if number > 1:
            links.append(Link(SpanContext(trace_id, attempt_span_id(state.run_id, number - 1),
                                          is_remote=True,
                                          trace_flags=TraceFlags(TraceFlags.SAMPLED)),
                              {"purpose_agent.link": "previous attempt"}))
        attributes = {
            "gen_ai.operation.name": "invoke_workflow", "gen_ai.conversation.id": state.run_id,
            "purpose_agent.run_id": state.run_id, "purpose_agent.attempt": number,
            "purpose_agent.worker": self.owner, "purpose_agent.flow": state.flow or "",
        }
        if e.kind is EventKind.RUN_RESUMED:
            attributes["purpose_agent.resumed_from"] = str(e.payload.get("previous", ""))
        with ids_for_next_span(trace_id, attempt_span_id(state.run_id, number)):
            span = self.tracer.start_span(
                f"invoke_workflow {state.flow or 'flow'}", context=trace.set_span_in_context(
                    trace.INVALID_SPAN), kind=SpanKind.INTERNAL, links=links,
                attributes=_clean(attributes), start_time=_ns(e.ts))
        self.attempt = _Attempt(span, number)

    def _attempt_number(self, run_id: str, seq: int) -> int:
        """How many attempts the run has had up to the one starting at ``seq``: its
        resumes, and its start unless it was queued (a worker's claim resumes it)."""
        kinds = [EventKind.RUN_STARTED, EventKind.RUN_RESUMED]
        return sum(1 for ev in self.cp.list_events(run_id, kinds=kinds)
                   if ev.seq <= seq and (ev.kind == EventKind.RUN_RESUMED
                                         or "queue" not in ev.payload)) or 1

    def _end_attempt(self, attempt: _Attempt, e: PAEvent) -> None:
        paused = e.payload.get("reason") if e.kind is EventKind.RUN_PAUSED else None
        error = None
        if e.kind is EventKind.RUN_ERROR:
            error = f"{e.payload.get('type', 'error')}: {e.payload.get('message', '')}"
        failed = attempt.nodes.pop(e.node or "", None) if error is not None else None
        self._end(failed, e.ts, error=error)  # the node the run failed in
        for span in [*attempt.models.values(), *attempt.steps.values(),
                     *attempt.nodes.values()]:
            if paused is not None:
                span.set_attribute("purpose_agent.paused", str(paused))
            self._end(span, e.ts)
        span = attempt.span
        if paused is not None:
            span.set_attribute("purpose_agent.paused", str(paused))
        span.set_attribute("purpose_agent.status", str(e.kind).split(".")[-1])
        self._end(span, e.ts, error=error)
        self.attempt = None

    def _step_started(self, attempt: _Attempt, e: PAEvent) -> None:
        p = e.payload
        name = str(p.get("step"))
        parent = attempt.nodes.get(e.node or "", attempt.span)
        attributes: dict[str, Any] = {"purpose_agent.node": e.node,
                                      "purpose_agent.step_name": name,
                                      "purpose_agent.attempt": p.get("attempt")}
        if name.startswith(_TOOL):
            tool = name[len(_TOOL):]
            attributes.update({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool})
            attributes["gen_ai.tool.call.id"] = p.get("call_id")
            if self.capture and "args" in p:
                attributes["gen_ai.tool.call.arguments"] = _text(redact(p["args"]))
            title = f"execute_tool {tool}"
        else:
            title = f"step {name}"
        self._end(attempt.steps.pop((e.node, name), None), e.ts)
        attempt.steps[(e.node, name)] = self._start(title, e, parent, attributes)

    def _model_request(self, attempt: _Attempt, e: PAEvent) -> None:
        p = e.payload
        model = p.get("model")
        parent = attempt.nodes.get(e.node or "", attempt.span)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
            "gen_ai.provider.name": p.get("provider") or "unknown",
            "gen_ai.agent.name": p.get("agent"), "purpose_agent.node": e.node,
            "purpose_agent.turn": p.get("turn")}
        if self.capture and "last" in p:
            attributes["gen_ai.input.messages"] = _text(
                [{"role": p.get("last_role"), "parts": [
                    {"type": "text", "content": redact(p.get("last"))}]}])
        self._end(attempt.models.pop(e.node, None), e.ts)
        attempt.models[e.node] = self._start(f"chat {model}", e, parent, attributes,
                                             kind=SpanKind.CLIENT)

    def _model_response(self, attempt: _Attempt, e: PAEvent) -> None:
        span = attempt.models.pop(e.node, None)
        if span is None:
            return
        p = e.payload
        usage: dict[str, Any] = p["usage"] if isinstance(p.get("usage"), dict) else {}
        attributes: dict[str, Any] = {
            "gen_ai.response.model": p.get("model"),
            "gen_ai.usage.input_tokens": usage.get("input_tokens"),
            "gen_ai.usage.output_tokens": usage.get("output_tokens"),
            "gen_ai.response.finish_reasons": ([str(p["finish_reason"])]
                                               if p.get("finish_reason") else None)}
        if self.capture and "content" in p:
            attributes["gen_ai.output.messages"] = _text([{"role": "assistant", "parts": [
                {"type": "text", "content": redact(p.get("content"))}],
                "finish_reason": p.get("finish_reason")}])
        for name, value in _clean(attributes).items():
            span.set_attribute(name, value)
        error = f"{p.get('error')}: {p.get('message', '')}" if p.get("error") else None
        self._end(span, e.ts, error=error)

    # ── spans ────────────────────────────────────────────────────────────────────
    def _start(self, name: str, e: PAEvent, parent: Span, attributes: dict[str, Any],
               kind: SpanKind = SpanKind.INTERNAL) -> Span:
        assert self.attempt is not None
        attributes = {**attributes, "purpose_agent.run_id": e.run_id,
                      "purpose_agent.worker": self.owner,
                      "gen_ai.conversation.id": e.run_id}
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent),
                                      kind=kind, attributes=_clean(attributes),
                                      start_time=_ns(e.ts))

    @staticmethod
    def _end(span: Span | None, ts: float, *, error: str | None = None) -> None:
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error[:500]))
        span.end(end_time=_ns(ts))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: no None values."""
    return {k: v for k, v in attributes.items() if v is not None}


__all__ = ["CAPTURE_ENV", "RunObserver", "capture_content"]
