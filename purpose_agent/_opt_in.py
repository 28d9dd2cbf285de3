"""The opt-ins of optional integrations, wired into the core by the package
(``purpose_agent/__init__.py``): the core knows only the hook
(:func:`purpose_agent.flow.observe.provide_telemetry`), never the integration, and nothing
of an integration is imported until a flow asks for it."""

from __future__ import annotations

import importlib.util
import os

from purpose_agent.errors import FlowDefinitionError
from purpose_agent.flow.observe import ObserverFactory

ENV = "PURPOSE_AGENT_OTEL"


def telemetry(flag: bool | None) -> ObserverFactory | None:
    """``Flow(telemetry=...)`` when given, else ``$PURPOSE_AGENT_OTEL`` (1, true, yes, on):
    the OpenTelemetry export of :mod:`purpose_agent.telemetry`, imported now. None when
    not wanted; FlowDefinitionError when wanted but the ``otel`` extra is not installed."""
    wanted = flag if flag is not None else os.environ.get(ENV, "").strip().lower() in (
        "1", "true", "yes", "on")
    if not wanted:
        return None
    if not _installed("opentelemetry.sdk"):
        raise FlowDefinitionError(
            "telemetry is on (Flow(telemetry=True) or PURPOSE_AGENT_OTEL=1) but "
            "OpenTelemetry is not installed: pip install 'purpose-agent[otel]'")
    from purpose_agent.telemetry import run_observer

    return run_observer


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that cannot be imported
        return False


__all__ = ["ENV", "telemetry"]
