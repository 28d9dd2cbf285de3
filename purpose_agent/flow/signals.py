"""The engine's control-flow signals, at the bottom of ``flow/`` (no other flow module
below it), so the context, the engine and the timeouts share them without a cycle.

They derive from :class:`~purpose_agent.errors.ControlSignal` (a ``BaseException``): a
user's ``except Exception:`` around a tool call cannot swallow a pause, an in-doubt step,
an abandoned attempt or a lost lease. Only the engine raises and catches them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from purpose_agent.errors import ControlSignal
from purpose_agent.runtime.journal import StepRecord


class Pause(ControlSignal):
    """A node asked a person for input; the run pauses until resumed with an answer."""

    def __init__(self, record: StepRecord) -> None:
        super().__init__(record.name)
        self.record = record


class InDoubt(ControlSignal):
    """An at-most-once step started but its result was never journaled."""

    def __init__(self, record: StepRecord) -> None:
        super().__init__(record.name)
        self.record = record


class Park(ControlSignal):
    """The node waits for something longer than a process should hold it for: a timer
    (``wake_at``), or a message (``pending["topic"]``, until ``wake_at`` if it has a
    deadline). The run is parked with ``pending`` in its state, holding no process."""

    def __init__(self, pending: dict[str, Any], wake_at: float | None) -> None:
        super().__init__(pending["kind"])
        self.pending = pending
        self.wake_at = wake_at


class Abandoned(ControlSignal):
    """The node's attempt was given up (timeout); it may not journal anything more."""


class LeaseLost(ControlSignal):
    """Another owner took the run over; this driver must stop advancing it."""


_E = TypeVar("_E", bound=BaseException)


def find_signal(exc: BaseException, kind: type[_E] | tuple[type[_E], ...]) -> _E | None:
    """``exc`` if it is a ``kind``, else the first ``kind`` inside it when it is an
    exception group (asyncio.TaskGroup wraps what its tasks raise)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_signal(inner, kind)
            if found is not None:
                return found
    return None


__all__ = ["Abandoned", "InDoubt", "LeaseLost", "Park", "Pause", "find_signal"]
