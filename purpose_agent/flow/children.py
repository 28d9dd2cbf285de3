"""Child runs: ``ctx.run_child(flow, data)`` starts a run of another flow from a node and
returns its final data.

The child's id is derived from the parent's step (``<parent>.c<execution>-<index>``) and
journaled before the child is created, so a crash never starts a second child: a node
that re-executes finds the same id, and the child as it is (running on, finished, or
paused). The child's state names its parent (``parent = {"run_id", "step", "key",
"kind": "child"}``); ``purpose-agent show`` lists a run's children and its parent, and
cancelling a parent cancels its children.

- Run in-process (``flow.run``): the child runs right there, inside the parent's node.
  If it pauses (a question, a long sleep, a message wait), the parent parks waiting for
  it (PAUSED, ``pending = {"kind": "child", ...}``); once the child has finished
  (``child_flow.resume(child_id, ...)``), ``flow.resume(parent_id)`` goes on with the
  child's data.
- From a queue: the child is enqueued on the parent's queue (a worker serving its flow
  runs it) and the parent parks on its queue until the child ends, which puts it back.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from purpose_agent.errors import RunBusyError, RunStateError
from purpose_agent.flow.parking import due, queue_of
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.checkpoint._prepare import MAX_RUN_ID
from purpose_agent.runtime.state import RunState, RunStatus


class ChildFlow(Protocol):
    """What a child run needs of its flow (a :class:`~.graph.Flow`): its public methods,
    so this module sits below the flow definition, not beside the engine."""

    name: str

    def run(self, data: dict[str, Any] | None = None, *,
            checkpointer: BaseCheckpointer | None = None, run_id: str | None = None,
            _parent: dict[str, Any] | None = None) -> RunState: ...

    def resume(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None) -> RunState: ...

    def enqueue(self, data: dict[str, Any] | None = None, *,
                checkpointer: BaseCheckpointer | None = None, run_id: str | None = None,
                queue: str = "default", priority: int = 0,
                _parent: dict[str, Any] | None = None) -> str: ...


def child_run_id(parent: str, execution: int, index: int) -> str:
    """The id of the child a parent's step starts: the same every time that step runs."""
    tail = f".c{execution}-{index}"
    if len(parent) + len(tail) <= MAX_RUN_ID:
        return parent + tail
    digest = hashlib.sha256(parent.encode()).hexdigest()[:10]
    return f"{parent[:MAX_RUN_ID - len(tail) - 11]}.{digest}{tail}"


def advance(flow: ChildFlow, cp: BaseCheckpointer, child_id: str, data: dict[str, Any] | None,
            parent: dict[str, Any]) -> RunState:
    """Start the child, or take it up where it is; its state afterwards."""
    queues = queue_of(cp, parent["run_id"])
    info = cp.run_info(child_id)
    if queues is not None:
        if info is None:
            row = queues.queue_rows([parent["run_id"]])[parent["run_id"]]
            flow.enqueue(data, checkpointer=cp, run_id=child_id, queue=row.queue,
                         priority=row.priority, _parent=parent)
        return _state(cp, child_id)
    try:
        if info is None:
            return flow.run(data, checkpointer=cp, run_id=child_id, _parent=parent)
        if info.status in (RunStatus.RUNNING, RunStatus.PENDING) or (
                info.status is RunStatus.PAUSED and due(cp, _state(cp, child_id))):
            return flow.resume(child_id, checkpointer=cp)
    except (RunBusyError, RunStateError):
        pass  # advanced (or created) by another driver right now: the parent waits
    return _state(cp, child_id)


def outcome(state: RunState) -> dict[str, Any] | None:
    """The child's data once it completed; None while it goes on. A failed child raises
    RunFailed (the parent's node fails, and retries as its policy says); a cancelled
    one RunStateError."""
    if state.status is RunStatus.COMPLETED:
        return state.data
    if state.status is RunStatus.FAILED:
        state.raise_for_status()
    if state.status is RunStatus.CANCELLED:
        raise RunStateError(f"child run {state.run_id!r} was cancelled")
    return None


def children_of(cp: BaseCheckpointer, run_id: str) -> list[str]:
    """The ids of the runs ``run_id`` started with ``ctx.run_child`` / ``ctx.child``, in
    the order of their ids (the order of their places in the parent)."""
    return sorted(info.run_id for info in cp.list_run_infos()
                  if (info.parent or {}).get("kind") == "child"
                  and (info.parent or {}).get("run_id") == run_id)


def _state(cp: BaseCheckpointer, run_id: str) -> RunState:
    state = cp.load_latest(run_id)
    if state is None:
        raise RunStateError(f"child run {run_id!r} is gone from {cp!r} (deleted?)")
    return state


__all__ = ["advance", "child_run_id", "children_of", "outcome"]
