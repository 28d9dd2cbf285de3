"""Events: the immutable, append-only record of everything a run did.

A run's events have ``seq`` 1, 2, 3 … with no gaps and no duplicates; the transcript
of a run is a pure function of its events (see :mod:`purpose_agent.runtime.transcript`).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from purpose_agent.runtime import jsonutil

_id_prefix = uuid.uuid4().hex[:16]
_id_counter = itertools.count()


def _new_id_prefix() -> None:
    """A forked child must not repeat its parent's ids: it draws a prefix of its own."""
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = uuid.uuid4().hex[:16], itertools.count()


os.register_at_fork(after_in_child=_new_id_prefix)


def new_event_id() -> str:
    """A unique event id: a random per-process prefix and a counter (uuid4 per event
    cost ~8 µs, a visible share of a node's commit)."""
    return f"{_id_prefix}{next(_id_counter):016x}"


class EventKind(StrEnum):
    """What an event records. Values are dotted strings, stable across versions.

    ``node.*`` events tell a node execution (started, progress, completed, failed);
    ``step.*`` events tell a durable step (``ctx.step`` / ``@step``): started,
    completed, failed. Releases before 0.2 wrote ``agent.*`` and ``tool.*`` for these;
    such journals still read (the old value becomes the new kind, see
    :func:`kind_values`) and the old Python names are kept as aliases.
    """

    RUN_STARTED = "run.started"
    RUN_RESUMED = "run.resumed"
    RUN_PAUSED = "run.paused"
    RUN_FINISHED = "run.finished"
    RUN_ERROR = "run.error"
    RUN_CANCELLED = "run.cancelled"
    RUN_FORKED = "run.forked"
    NODE_STARTED = "node.started"
    NODE_PROGRESS = "node.progress"  # ctx.emit
    NODE_COMPLETED = "node.completed"
    # An attempt failed (a retry follows), or the driver stopped (``stopped: true``).
    NODE_FAILED = "node.failed"
    # User code caught a pause or in-doubt signal; the run paused anyway.
    NODE_SIGNAL_CAUGHT = "node.signal_caught"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_FAILED = "step.failed"
    # A journaled step replayed (or found in doubt) although the node now calls it with
    # other arguments: reported, never decided on (a step is its name and place).
    STEP_ARGS_CHANGED = "step.args_changed"
    MODEL_REQUEST = "model.request"
    MODEL_RESPONSE = "model.response"
    HITL_REQUEST = "hitl.request"
    HITL_RESPONSE = "hitl.response"
    STATE_UPDATED = "state.updated"
    # Durable waits (ctx.sleep, ctx.wait_for): a timer's journaled wake-up time, a message
    # delivered to the run, a wait that reached its deadline.
    TIMER_SET = "timer.set"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_TIMEOUT = "message.timeout"
    # ctx.run_child: a child run started (its id journaled first), and its final data.
    CHILD_STARTED = "child.started"
    CHILD_FINISHED = "child.finished"

    # Deprecated names (aliases of the kinds above; the seed contract uses two of them).
    AGENT_STARTED = "node.started"
    AGENT_PROGRESS = "node.progress"
    AGENT_FINISHED = "node.completed"
    AGENT_ERROR = "node.failed"
    SIGNAL_CAUGHT = "node.signal_caught"
    TOOL_CALL = "step.started"
    TOOL_RESULT = "step.completed"
    TOOL_ERROR = "step.failed"

    @classmethod
    def _missing_(cls, value: object) -> EventKind | None:
        # A journal of an earlier release: its value names the same kind.
        return cls.__members__.get(_LEGACY.get(str(value), ""))


# Kind values written by releases before 0.2, and the kind each one is now.
_LEGACY = {
    "agent.started": "NODE_STARTED",
    "agent.progress": "NODE_PROGRESS",
    "agent.finished": "NODE_COMPLETED",
    "agent.error": "NODE_FAILED",
    "agent.signal_caught": "NODE_SIGNAL_CAUGHT",
    "tool.call": "STEP_STARTED",
    "tool.result": "STEP_COMPLETED",
    "tool.error": "STEP_FAILED",
}


def kind_values(kind: EventKind | str) -> tuple[str, ...]:
    """Every value a journal may hold for ``kind`` (given by its value, new or old): the
    current one and the one earlier releases wrote. A filter on kinds matches them all."""
    try:
        current = EventKind(kind)
    except ValueError:
        return (str(kind),)  # a kind this version does not know: itself only
    return (current.value, *(old for old, new in _LEGACY.items()
                             if EventKind[new] is current))


class Visibility(StrEnum):
    """Who an event is meant for: the person following the run, or debugging only."""

    PUBLIC = "public"
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class PAEvent:
    """One immutable event of a run. ``payload`` holds strict-JSON details."""

    run_id: str
    kind: EventKind
    seq: int = 0
    node: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    visibility: Visibility = Visibility.PUBLIC
    ts: float = field(default_factory=time.time)
    event_id: str = field(default_factory=new_event_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "run_id": self.run_id,
            "kind": str(self.kind),
            "seq": self.seq,
            "ts": self.ts,
            "node": self.node,
            "visibility": str(self.visibility),
            "payload": self.payload,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PAEvent:
        return cls(
            run_id=data["run_id"],
            kind=_kind(data["kind"]),
            seq=int(data.get("seq", 0)),
            node=data.get("node"),
            payload=dict(data.get("payload") or {}),
            visibility=Visibility(data.get("visibility", "public")),
            ts=float(data.get("ts", 0.0)),
            event_id=data.get("event_id") or new_event_id(),
        )

    def to_json(self) -> str:
        """The event as stored: strict JSON, the keys of :meth:`to_dict`."""
        # Every event is encoded once on its way to a store, a few per node: this builds
        # the common case's text directly (measured 2.7 vs 4.4 µs per event), and leaves
        # anything unusual to the full check, which names what is wrong.
        node, ts = jsonutil.text(self.node), self.ts
        payload = jsonutil.dumps_simple(self.payload) if type(self.payload) is dict else None
        ids = (jsonutil.text(self.event_id), jsonutil.text(self.run_id),
               jsonutil.text(self.kind), jsonutil.text(self.visibility))
        if (node is None or payload is None or None in ids or type(ts) is not float
                or ts - ts != 0.0 or type(self.seq) is not int):
            return jsonutil.dumps(self.to_dict())
        return (f'{{"event_id":{ids[0]},"run_id":{ids[1]},"kind":{ids[2]},"seq":{self.seq},'
                f'"ts":{ts!r},"node":{node},"visibility":{ids[3]},"payload":{payload}}}')


def _kind(value: str) -> EventKind:
    try:
        return EventKind(value)
    except ValueError:
        # A newer version may journal kinds this one does not know; keep the value.
        return value  # type: ignore[return-value]


def create_event(
    run_id: str,
    kind: EventKind | str,
    *,
    seq: int = 0,
    node: str | None = None,
    visibility: Visibility = Visibility.PUBLIC,
    **payload: Any,
) -> PAEvent:
    """Build an event; unknown keyword arguments become its ``payload``.

    The payload is checked to be strict JSON here, so a bad value fails where it is
    created, not later inside a store commit.
    """
    jsonutil.check(payload, "$.payload")
    return PAEvent(
        run_id=run_id,
        kind=EventKind(kind) if not isinstance(kind, EventKind) else kind,
        seq=seq,
        node=node,
        payload=payload,
        visibility=visibility,
    )


__all__ = ["EventKind", "PAEvent", "Visibility", "create_event", "kind_values"]
