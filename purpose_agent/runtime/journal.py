"""The records stores keep, and the pure logic every store shares.

A run is journaled as commits. A commit carries, atomically: events, the run's new
header, optionally a :class:`Delta` (one node's update to the run data), optionally a
full snapshot, and step records (journaled tool/model calls and human answers).
Loading a run is its latest snapshot plus the deltas after it — so the cost of a commit
does not grow with the length of the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.owners import (  # re-exported: the stores import them here
    check_lease_free,
    owner_id,
    owner_is_dead,
)
from purpose_agent.runtime.state import NodeState, RunState, RunStatus

# ── data-update operations ────────────────────────────────────────────────────────
# A delta maps a data key to one operation, so a store can replay it without the flow's
# code: ["set", value] | ["append", [items]] | ["extend", [items]] | ["merge", {..}] |
# ["delete"].


def apply_ops(data: dict[str, Any], ops: dict[str, list[Any]]) -> None:
    """Apply a delta's operations to ``data`` in place (lists and dicts it holds are
    extended and updated in place too)."""
    for key, op in ops.items():
        kind = op[0]
        if kind == "set":
            data[key] = op[1]
        elif kind in ("append", "extend"):
            # In place: an agent's message list grows every turn, and copying it would
            # make each turn cost the whole conversation.
            current = data.get(key)
            if type(current) is list:
                current.extend(op[1])
            else:
                data[key] = (list(current) if current is not None else []) + list(op[1])
        elif kind == "merge":
            current = data.get(key)
            if type(current) is dict:
                current.update(op[1])
            else:
                data[key] = {**(current or {}), **op[1]}
        elif kind == "delete":
            data.pop(key, None)
        else:
            raise ValueError(f"unknown delta operation {kind!r} for key {key!r}")


@dataclass(slots=True)
class Delta:
    """One commit's change to a run: data operations and, for a node, its completion."""

    ops: dict[str, list[Any]] = field(default_factory=dict)
    node: str | None = None  # the node whose completion this commit records
    node_state: dict[str, Any] | None = None
    # ``ops`` as strict JSON, when the engine encoded it already (to check it before
    # changing anything): the commit writes this text, so its check is the commit's own.
    ops_json: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"ops": self.ops, "node": self.node, "node_state": self.node_state}

    def to_json(self, path: str = "$.update") -> str:
        """The delta as stored; ``ops`` already encoded are not encoded again."""
        if self.ops_json is None:
            return jsonutil.dumps(self.to_dict(), path)
        rest = jsonutil.dumps({"node": self.node, "node_state": self.node_state}, path)
        return f'{{"ops":{self.ops_json},{rest[1:]}'

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Delta:
        return cls(ops=data.get("ops") or {}, node=data.get("node"),
                   node_state=data.get("node_state"))


def apply_delta(state: RunState, delta: Delta, header: dict[str, Any]) -> None:
    """Advance ``state`` by one journaled commit (its delta, then its header)."""
    apply_ops(state.data, delta.ops)
    if delta.node is not None:
        state.completed_nodes.append(delta.node)
    if delta.node_state is not None:
        node = NodeState.from_dict(delta.node_state)
        state.node_states[node.name] = node
    state.apply_header(header)


# ── step records ──────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class StepRecord:
    """A journaled durable step (or human answer) of one node execution.

    ``status`` is ``started`` (journaled before an at-most-once call), ``done`` (result
    committed) or ``waiting`` (an interrupt that has no answer yet).
    """

    key: str
    step: int  # the node execution it belongs to (the run's current_step then)
    node: str
    index: int  # its position among the node execution's steps
    name: str
    kind: str = "step"  # "step" | "interrupt"
    status: str = "done"
    result: Any = None
    at_most_once: bool = False
    attempt: int = 1
    ts: float = field(default_factory=time.time)
    # A digest of the call's arguments, to report (never to decide) that a replayed
    # step is now called with other ones; None for interrupts and older records.
    args_digest: str | None = None
    # ``result`` as strict JSON, when whoever set it has encoded it already (a step's
    # result is encoded once to check and copy it): not part of the record's value.
    result_json: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "key": self.key, "step": self.step, "node": self.node, "index": self.index,
            "name": self.name, "kind": self.kind, "status": self.status,
            "result": self.result, "at_most_once": self.at_most_once,
            "attempt": self.attempt, "ts": self.ts,
        }
        if self.args_digest is not None:
            out["args_digest"] = self.args_digest
        return out

    def to_json(self) -> str:
        """The record as stored; a result already encoded is not encoded again (a model's
        reply can be kilobytes, and every model call is a step)."""
        if self.result_json is None:
            return jsonutil.dumps(self.to_dict(), f"$.steps.{self.name}")
        rest = self.to_dict()
        del rest["result"]
        return f'{jsonutil.dumps(rest, f"$.steps.{self.name}")[:-1]},"result":{self.result_json}}}'

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepRecord:
        return cls(**{k: data[k] for k in data if k in cls.__slots__ and k != "result_json"})


# ── commits ───────────────────────────────────────────────────────────────────────


@dataclass(slots=True)
class Commit:
    """Everything one atomic store write carries. Either all of it lands, or none.

    ``fence`` is the lease fencing token the writer holds: the store refuses the commit
    (``LeaseError``) if another owner has taken the run since. ``release`` clears the
    lease in the same commit (a run that finishes, pauses or fails).
    """

    events: list[PAEvent] = field(default_factory=list)
    state: RunState | None = None
    delta: Delta | None = None
    snapshot: bool = False
    steps: list[StepRecord] = field(default_factory=list)
    fence: int | None = None
    release: bool = False
    create: bool = False  # the run must not exist yet (RunStateError if it does)
    acquire: tuple[str, float] | None = None  # (owner, ttl): take the lease in this commit
    # A QueueEntry (runtime.queue): the run's queue row, written in this commit (a store
    # without a queue refuses it). Only with ``create``.
    enqueue: Any = None


@dataclass(slots=True, frozen=True)
class Lease:
    """Ownership of a run: one live owner advances it, identified by a fencing token."""

    run_id: str
    owner: str
    fence: int
    expires_at: float
    next_seq: int


@dataclass(slots=True)
class CommitResult:
    """What a store reports back from a commit."""

    events: list[PAEvent]
    lease: Lease | None = None
    cancel_requested: bool = False
    delta_bytes: int = 0
    snapshot_bytes: int = 0


@dataclass(slots=True)
class RunInfo:
    """One row of a run listing."""

    run_id: str
    status: RunStatus
    flow: str | None
    purpose: str
    current_node: str | None
    current_step: int
    created_at: float
    updated_at: float
    owner: str | None = None
    lease_expires_at: float | None = None
    pending: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    cancel_requested: bool = False

    @classmethod
    def from_header(cls, header: dict[str, Any], owner: str | None = None,
                    lease_expires_at: float | None = None,
                    cancel_requested: bool = False) -> RunInfo:
        return cls(
            run_id=header["run_id"],
            status=RunStatus(header.get("status") or "pending"),
            flow=header.get("flow"),
            purpose=header.get("purpose") or "",
            current_node=header.get("current_node"),
            current_step=int(header.get("current_step") or 0),
            created_at=float(header.get("created_at") or 0.0),
            updated_at=float(header.get("updated_at") or 0.0),
            owner=owner,
            lease_expires_at=lease_expires_at,
            pending=header.get("pending"),
            parent=header.get("parent"),
            cancel_requested=bool(cancel_requested),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "status": str(self.status), "flow": self.flow,
            "purpose": self.purpose, "current_node": self.current_node,
            "current_step": self.current_step, "created_at": self.created_at,
            "updated_at": self.updated_at, "owner": self.owner,
            "lease_expires_at": self.lease_expires_at, "pending": self.pending,
            "parent": self.parent, "cancel_requested": self.cancel_requested,
        }


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which runs a listing wants, checked (see ``_arguments.run_query``): of ``status``,
    of ``flow``, whose id contains ``search`` (case-sensitive), after the listing key
    ``after`` — ``(updated_at, run_id)`` of the last run of the previous page — and at
    most ``limit`` of them (None: every one). The listing order is newest first, ties
    by run id descending: :meth:`key` descending."""

    status: RunStatus | None = None
    flow: str | None = None
    search: str | None = None
    after: tuple[float, str] | None = None
    limit: int | None = None

    @staticmethod
    def key(info: RunInfo) -> tuple[float, str]:
        return (info.updated_at, info.run_id)

    def matches(self, info: RunInfo) -> bool:
        return ((self.status is None or info.status == self.status)
                and (self.flow is None or info.flow == self.flow)
                and (self.search is None or self.search in info.run_id)
                and (self.after is None or self.key(info) < self.after))


def sort_infos(infos: Iterable[RunInfo], query: RunQuery | None = None) -> list[RunInfo]:
    """The runs of ``infos`` that ``query`` wants, newest first (ties broken by id,
    descending), at most ``query.limit`` of them."""
    query = query or RunQuery()
    rows = [i for i in infos if query.matches(i)]
    rows.sort(key=RunQuery.key, reverse=True)
    return rows[:query.limit] if query.limit is not None else rows



@dataclass(slots=True, frozen=True)
class Message:
    """A message sent to a run (``flow.send``): its place in the run's mailbox (``seq``,
    1, 2, 3 … in the order they were sent), its topic and JSON payload, and the key of the
    ``ctx.wait_for`` it was delivered to (None while nobody has received it)."""

    run_id: str
    seq: int
    topic: str
    payload: Any
    sent_at: float
    dedup_key: str | None = None
    delivered_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "seq": self.seq, "topic": self.topic,
                "payload": self.payload, "sent_at": self.sent_at,
                "dedup_key": self.dedup_key, "delivered_to": self.delivered_to}


__all__ = [
    "Commit", "CommitResult", "Delta", "Lease", "Message", "RunInfo", "RunQuery", "StepRecord",
    "apply_delta", "apply_ops", "check_lease_free", "owner_id", "owner_is_dead", "sort_infos",
]
