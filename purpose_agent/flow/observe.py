"""Observers of a run's committed events: how an optional integration (OpenTelemetry, in
``purpose_agent.telemetry``) sees a run, from one place in the engine.

An observer is handed each batch of events after the commit that made them durable, in
seq order. So it reports only what the journal holds: a step replayed from the journal
commits no event and is reported by nobody, and an attempt killed mid-node has reported
exactly what it committed. An observer that fails is logged and never fails the run
(its commit has landed).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Protocol

from purpose_agent.errors import FlowDefinitionError
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.state import RunState

log = logging.getLogger("purpose_agent.telemetry")

ENV = "PURPOSE_AGENT_OTEL"


class Observer(Protocol):
    def committed(self, state: RunState, events: Sequence[PAEvent]) -> None: ...


def telemetry_wanted(flag: bool | None) -> bool:
    """``Flow(telemetry=...)`` when given, else ``$PURPOSE_AGENT_OTEL`` (1, true, yes).
    FlowDefinitionError when it is wanted but the ``otel`` extra is not installed."""
    wanted = flag if flag is not None else os.environ.get(ENV, "").strip().lower() in (
        "1", "true", "yes", "on")
    if wanted and not _installed("opentelemetry.sdk"):
        raise FlowDefinitionError(
            "telemetry is on (Flow(telemetry=True) or PURPOSE_AGENT_OTEL=1) but "
            "OpenTelemetry is not installed: pip install 'purpose-agent[otel]'")
    return bool(wanted)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that cannot be imported
        return False


def observer_for(cp: BaseCheckpointer, owner: str) -> Observer:
    # By name, and only when telemetry is on: the core imports nothing of OpenTelemetry
    # unless a flow asks for it.
    module = importlib.import_module("purpose_agent.telemetry")
    observer: Observer = module.run_observer(cp, owner)
    return observer


def notify(observer: Observer, state: RunState, events: Sequence[PAEvent]) -> None:
    try:
        observer.committed(state, events)
    except Exception:
        log.warning("telemetry failed on run %r (the run goes on)", state.run_id,
                    exc_info=True)


__all__ = ["ENV", "Observer", "notify", "observer_for", "telemetry_wanted"]
