"""The process's trace pipeline for purpose-agent's spans: an SDK TracerProvider of its
own, configured by the standard ``OTEL_*`` variables (exporter endpoint and headers,
service name and resource attributes, sampler, batch settings), exporting OTLP over
HTTP/protobuf unless :func:`configure` is given another exporter.

Its own provider, because each run attempt's span has a span id derived from the run id
and the attempt number (and every span of a run the trace id derived from the run id):
an attempt after a crash links to the attempt before it although that process is gone
and never told anyone its span id.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Tracer

SCOPE = "purpose_agent"

# The ids the next span started in this context takes (a run attempt's), once.
_next_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "purpose_agent_next_span_ids", default=None)


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:size],
                           "big")
    return value or 1  # all-zero ids are invalid


def run_trace_id(run_id: str) -> int:
    """The trace id of every span of run ``run_id``."""
    return _digest(f"trace/{run_id}", 16)


def attempt_span_id(run_id: str, attempt: int) -> int:
    """The span id of attempt number ``attempt`` of run ``run_id``."""
    return _digest(f"attempt/{run_id}/{attempt}", 8)


class _RunIds(RandomIdGenerator):
    """Random ids, except for the span a run attempt is started with (see above)."""

    def generate_span_id(self) -> int:
        ids = _next_ids.get()
        return ids[1] if ids is not None else super().generate_span_id()

    def generate_trace_id(self) -> int:
        ids = _next_ids.get()
        return ids[0] if ids is not None else super().generate_trace_id()


class ids_for_next_span:
    """``with ids_for_next_span(trace_id, span_id): tracer.start_span(...)``."""

    def __init__(self, trace_id: int, span_id: int) -> None:
        self._ids = (trace_id, span_id)

    def __enter__(self) -> None:
        self._token = _next_ids.set(self._ids)

    def __exit__(self, *exc: object) -> None:
        _next_ids.reset(self._token)


_lock = threading.Lock()
_provider: TracerProvider | None = None


def configure(exporter: SpanExporter | None = None, *, batch: bool | None = None) -> TracerProvider:
    """Set up (again) the provider purpose-agent's spans go to: ``exporter`` (default: OTLP
    over HTTP/protobuf, from ``OTEL_EXPORTER_OTLP_*``), batched unless ``batch=False``
    (default: batched for OTLP, one by one for another exporter, e.g. an in-memory one in
    tests). The previous provider is flushed and shut down. Returns the provider."""
    global _provider
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter()
        batch = True if batch is None else batch
    processor: SpanProcessor = (BatchSpanProcessor(exporter) if batch
                                else SimpleSpanProcessor(exporter))
    provider = TracerProvider(resource=Resource.create(), id_generator=_RunIds())
    provider.add_span_processor(processor)
    with _lock:
        old, _provider = _provider, provider
    if old is not None:
        old.shutdown()
    return provider


def tracer() -> Tracer:
    """purpose-agent's tracer, configuring the default pipeline on first use."""
    with _lock:
        provider = _provider
    if provider is None:
        provider = configure()
    return provider.get_tracer(SCOPE)


def shutdown() -> None:
    """Flush and stop the pipeline (also done at interpreter exit)."""
    global _provider
    with _lock:
        old, _provider = _provider, None
    if old is not None:
        old.shutdown()


__all__ = ["attempt_span_id", "configure", "ids_for_next_span", "run_trace_id", "shutdown",
           "tracer"]
