"""Run state: where a run is, what it knows, and what its tools already returned.

A :class:`RunState` is plain data with ``to_dict`` / ``from_dict``. Stores persist it as
strict JSON; the engine changes it only through node commits.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from purpose_agent.errors import RunFailed
from purpose_agent.runtime import jsonutil


class RunStatus(StrEnum):
    """Lifecycle of a run. PAUSED covers both a human interrupt and an in-doubt step;
    QUEUED is a run enqueued for a worker (``flow.enqueue``) that no worker has started."""

    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.CANCELLED)


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(slots=True)
class NodeState:
    """What is known of one node of a run: status, attempts, timing, last output."""

    name: str
    status: NodeStatus = NodeStatus.PENDING
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "attempts": self.attempts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "output": self.output,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeState:
        return cls(
            name=data["name"],
            status=NodeStatus(data.get("status", "pending")),
            attempts=int(data.get("attempts", 0)),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            output=data.get("output"),
            error=data.get("error"),
        )


# The small fields of a run, rewritten on every commit; everything else (data, the list
# of completed nodes, node states, cached results) travels as deltas and snapshots.
HEADER_FIELDS = (
    "run_id", "session_id", "status", "purpose", "flow", "flow_ref", "flow_file",
    "current_node", "current_step", "max_steps", "pending", "error", "parent", "created_at",
    "updated_at",
)


@dataclass
class RunState:
    """The state of one run.

    ``data`` is the run data nodes read and update; ``completed_nodes`` lists node
    executions in order (a node visited twice in a loop appears twice);
    ``pending`` holds what a paused run waits for (a human interrupt's payload, or an
    in-doubt step); ``error`` says why a FAILED run failed (``type``, ``message``,
    ``node``, ``attempt`` and ``traceback``: the text of the last attempt's traceback,
    redacted and at most a few KB); ``tool_cache`` maps idempotency keys to recorded
    results (seed API). :meth:`raise_for_status` turns a FAILED state into an exception.
    """

    run_id: str
    session_id: str | None = None
    status: RunStatus = RunStatus.PENDING
    purpose: str = ""
    flow: str | None = None
    flow_ref: str | None = None
    flow_file: str | None = None  # the file of flow_ref's module (None when it is a file)
    current_node: str | None = None
    current_step: int = 0
    max_steps: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    completed_nodes: list[str] = field(default_factory=list)
    node_states: dict[str, NodeState] = field(default_factory=dict)
    tool_cache: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.status, RunStatus):
            self.status = RunStatus(self.status)

    def raise_for_status(self) -> RunState:
        """Raise :class:`~purpose_agent.errors.RunFailed` if the run is FAILED; return this
        state otherwise, so ``flow.run(...).raise_for_status()`` chains.

        The error carries the run id, the failed node and the original exception's type,
        message and (redacted, shortened) traceback text. A paused, cancelled or still
        running run is not an error: check ``status`` for those.
        """
        if self.status is RunStatus.FAILED:
            raise RunFailed(self.run_id, self.error)
        return self

    # ── node bookkeeping (low-level: the engine's, and the seed contract's) ───────
    # The methods below are part of the seed API the original contract exercises. Flows
    # never need them: the engine calls them inside its commits. Calling them on a state
    # you then save yourself bypasses the engine's journal.
    def mark_node_started(self, name: str) -> NodeState:
        """Low-level (the engine's): make ``name`` the current node and count an attempt
        of it."""
        node = self.node_states.get(name) or NodeState(name)
        node.status = NodeStatus.RUNNING
        node.attempts += 1
        node.started_at = time.time()
        node.finished_at = None
        node.error = None
        self.node_states[name] = node
        self.current_node = name
        return node

    def mark_node_completed(self, name: str, output: Any = None) -> NodeState:
        """Low-level (the engine's): record that ``name`` finished, with its output
        (strict JSON)."""
        node = self.node_states.get(name) or NodeState(name)
        node.status = NodeStatus.COMPLETED
        node.finished_at = time.time()
        node.output = output
        self.node_states[name] = node
        self.completed_nodes.append(name)
        return node

    def mark_node_failed(self, name: str, error: str) -> NodeState:
        """Low-level (the engine's): record that ``name`` failed with ``error`` (a message).
        A run's failure itself is ``status``/``error``; see :meth:`raise_for_status`."""
        node = self.node_states.get(name) or NodeState(name)
        node.status = NodeStatus.FAILED
        node.finished_at = time.time()
        node.error = error
        self.node_states[name] = node
        return node

    # ── idempotency cache (the seed API; the engine journals steps in the store) ──
    # Kept for the seed contract and code written against it. Durable steps
    # (``ctx.step`` / ``@step``) are journaled by the engine and do not use this cache.
    def get_idempotency_key(self, tool: str, *args: Any, **kwargs: Any) -> str:
        """Seed API: a key that is the same for the same run, step, tool and arguments."""
        material = jsonutil.canonical([self.run_id, self.current_step, tool, args, kwargs])
        digest = hashlib.sha256(material.encode()).hexdigest()[:32]
        return f"{tool}:{digest}"

    def cache_result(self, key: str, result: Any) -> None:
        """Seed API: record ``result`` (strict JSON, checked now) under ``key``."""
        jsonutil.check(result, f"$.tool_cache.{key}")
        self.tool_cache[key] = result

    def has_cached_result(self, key: str) -> bool:
        """Seed API: True if :meth:`cache_result` recorded ``key``."""
        return key in self.tool_cache

    def get_cached_result(self, key: str, default: Any = None) -> Any:
        """Seed API: the result recorded under ``key``, else ``default``."""
        return self.tool_cache.get(key, default)

    # ── serialisation ──────────────────────────────────────────────────────────
    def header(self) -> dict[str, Any]:
        """Low-level (the stores'): the small, fixed-size part of the state (no data,
        history or cache), journaled with every commit."""
        # Spelled out (HEADER_FIELDS, in order): built on every commit, and a loop of
        # getattr costs twice as much.
        return {
            "run_id": self.run_id, "session_id": self.session_id, "status": str(self.status),
            "purpose": self.purpose, "flow": self.flow, "flow_ref": self.flow_ref,
            "flow_file": self.flow_file, "current_node": self.current_node,
            "current_step": self.current_step,
            "max_steps": self.max_steps, "pending": self.pending, "error": self.error,
            "parent": self.parent, "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_dict(self) -> dict[str, Any]:
        """The whole state as strict-JSON-ready plain data (``from_dict`` reads it back)."""
        out = self.header()
        out["data"] = self.data
        out["completed_nodes"] = self.completed_nodes
        out["node_states"] = {k: v.to_dict() for k, v in self.node_states.items()}
        out["tool_cache"] = self.tool_cache
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        state = cls(run_id=data["run_id"])
        state.apply_header(data)
        state.data = dict(data.get("data") or {})
        state.completed_nodes = list(data.get("completed_nodes") or [])
        state.node_states = {
            k: NodeState.from_dict(v) for k, v in (data.get("node_states") or {}).items()
        }
        state.tool_cache = dict(data.get("tool_cache") or {})
        return state

    def apply_header(self, header: dict[str, Any]) -> None:
        """Low-level (the stores'): set the fields of a :meth:`header` on this state."""
        for name in HEADER_FIELDS:
            if name in header:
                setattr(self, name, header[name])
        self.status = RunStatus(self.status)
        self.current_step = int(self.current_step or 0)

    def copy(self) -> RunState:
        """A deep copy (through strict JSON, so it is also a check that the state stores)."""
        return RunState.from_dict(jsonutil.loads(jsonutil.dumps(self.to_dict())))


__all__ = ["NodeState", "NodeStatus", "RunState", "RunStatus"]
