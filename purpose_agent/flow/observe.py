"""Observers of a run's committed events: how an optional integration (such as the
OpenTelemetry export) sees a run, from one place in the engine.

An observer is handed each batch of events after the commit that made them durable, in
seq order. So it reports only what the journal holds: a step replayed from the journal
commits no event and is reported by nobody, and an attempt killed mid-node has reported
exactly what it committed. An observer that fails is logged and never fails the run
(its commit has landed).

The core knows no integration. A flow's ``telemetry=`` opt-in is handed to whatever the
package registered with :func:`provide_telemetry` (``purpose_agent/__init__.py`` does,
with :mod:`purpose_agent._opt_in`), which decides, imports what it needs, and hands back
the factory of each run's observer; the engine only calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from purpose_agent.errors import FlowDefinitionError
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.state import RunState

log = logging.getLogger("purpose_agent.telemetry")  # the name users configure, kept


class Observer(Protocol):
    def committed(self, state: RunState, events: Sequence[PAEvent]) -> None: ...


# The observer of one driver of a run: (its store, its lease owner) -> observer.
ObserverFactory = Callable[[BaseCheckpointer, str], Observer]
# ``Flow(telemetry=...)`` (None: not given) -> the observer factory, or None when off.
TelemetryOptIn = Callable[[bool | None], ObserverFactory | None]

_telemetry: list[TelemetryOptIn] = []  # at most one: what provide_telemetry registered


def provide_telemetry(opt_in: TelemetryOptIn) -> None:
    """Register what a flow's ``telemetry=`` opt-in turns on (the last registration
    wins). ``opt_in`` is called when a run of the flow starts or resumes; it raises
    :class:`~purpose_agent.errors.FlowDefinitionError` when telemetry is wanted and
    cannot be had, so the run is refused before it starts."""
    _telemetry[:] = [opt_in]


def telemetry_observer(flag: bool | None) -> ObserverFactory | None:
    """The observer factory ``Flow(telemetry=flag)`` asks for, None when it asks for
    none (see :func:`provide_telemetry`)."""
    if not _telemetry:
        if flag:
            raise FlowDefinitionError(
                "Flow(telemetry=True), but nothing provides telemetry: import purpose_agent "
                "(it registers the OpenTelemetry export) before running the flow")
        return None
    return _telemetry[0](flag)


def notify(observer: Observer, state: RunState, events: Sequence[PAEvent]) -> None:
    try:
        observer.committed(state, events)
    except Exception:
        log.warning("telemetry failed on run %r (the run goes on)", state.run_id,
                    exc_info=True)


__all__ = ["Observer", "ObserverFactory", "TelemetryOptIn", "notify", "provide_telemetry",
           "telemetry_observer"]
