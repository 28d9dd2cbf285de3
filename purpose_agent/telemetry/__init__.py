"""OpenTelemetry export of runs (``pip install 'purpose-agent[otel]'``).

Turn it on with ``Flow(..., telemetry=True)`` or ``PURPOSE_AGENT_OTEL=1``; the standard
``OTEL_*`` variables configure the exporter (OTLP over HTTP/protobuf:
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``…).
:func:`configure` sends the spans elsewhere (an in-memory exporter in tests). What the
spans are: :mod:`purpose_agent.telemetry._spans`. The core never imports this package:
it calls the hook of :mod:`purpose_agent.flow.observe`, which the package answers with
:mod:`purpose_agent._opt_in`, importing this only when a flow asks for telemetry.
"""

from __future__ import annotations

from purpose_agent.runtime.checkpoint import BaseCheckpointer

from ._setup import attempt_span_id, configure, run_trace_id, shutdown
from ._spans import CAPTURE_ENV, RunObserver


def run_observer(cp: BaseCheckpointer, owner: str) -> RunObserver:
    """The observer the engine hands a driver's committed events (flow/observe.py)."""
    return RunObserver(cp, owner)


__all__ = ["CAPTURE_ENV", "RunObserver", "attempt_span_id", "configure", "run_observer",
           "run_trace_id", "shutdown"]
