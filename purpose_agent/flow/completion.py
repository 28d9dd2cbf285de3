"""A node's completion, decided without I/O: its update checked and encoded as the
journal holds it, then applied to the run's state in memory with its events, ready for
the one commit that makes it durable (``Runner.complete`` / ``acomplete`` write it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from purpose_agent.errors import SerializationError
from purpose_agent.flow.context import NodeContext
from purpose_agent.flow.plan import END, NodeSpec, Plan
from purpose_agent.flow.reducers import to_ops
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import Delta, apply_ops
from purpose_agent.runtime.state import RunState, RunStatus


def encode_update(flow: Plan, state: RunState, spec: NodeSpec,
                  update: Any) -> tuple[dict[str, Any], str]:
    """The node's update as journal operations and their JSON, checked before anything
    changes (TypeError, SerializationError naming the key)."""
    if update is None:
        update = {}
    if not isinstance(update, dict):
        raise TypeError(f"node {spec.name!r} returned a {type(update).__name__}; a node "
                        "returns a dict of updates to the run data, or None")
    path = f"$.update[{spec.name}]"
    if flow.has_callable_reducers:  # they see the update: refuse non-JSON first
        jsonutil.check(update, path, depth=2)
    ops = to_ops(update, state.data, flow.reducers)
    try:
        # As deep as the journal holds them ({"ops": {key: [op, value]}}): the very
        # text the commit writes, so the commit cannot refuse what passed here.
        return ops, jsonutil.dumps(ops, path, depth=1)
    except SerializationError:
        jsonutil.check(update, path, depth=2)  # to name the key as the node returned it
        raise


def completion(flow: Plan, state: RunState, spec: NodeSpec, ctx: NodeContext,
               ops: dict[str, Any], ops_json: str,
               event: Callable[..., None]) -> dict[str, Any]:
    """Apply the node's completion to ``state`` in memory (data, completed node, next
    node) and buffer its events with ``event``; the keyword arguments of the commit that
    makes it durable. The caller rewinds the state if anything here or there fails."""
    apply_ops(state.data, ops)
    nxt = flow.next_after(spec.name, state.data)
    state.current_step += 1
    node_state = state.mark_node_completed(spec.name)
    state.current_node = None if nxt == END else nxt
    event(EventKind.NODE_COMPLETED, spec.name, execution=state.current_step,
          updated=sorted(ops), next=nxt, replayed_steps=ctx.replayed)
    done = nxt == END
    if done:
        state.status = RunStatus.COMPLETED
        event(EventKind.RUN_FINISHED, None, executions=state.current_step)
    return {"delta": Delta(ops, spec.name, node_state.to_dict(), ops_json=ops_json),
            "release": done}
