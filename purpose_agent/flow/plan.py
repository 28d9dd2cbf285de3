"""What the engine runs: a validated flow's graph (:class:`Plan`), and the names the
definition and the engine share (``END``, ``MISSING``, :class:`NodeSpec`).

A :class:`~purpose_agent.flow.graph.Flow` is built node by node; when a run starts or is
resumed it is validated once and handed to the engine as a Plan. This module imports no
other flow module, so the graph, the engine and the run operations all build on it
without a cycle.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from purpose_agent.errors import FlowChangedError, FlowDefinitionError
from purpose_agent.flow.reducers import Reducer
from purpose_agent.flow.retry import RetryPolicy

END = "__end__"

NodeFn = Callable[..., Any]
Router = Callable[[Mapping[str, Any]], str]


class _Missing(enum.Enum):
    """The type of :data:`MISSING` (an enum member: one value, a readable repr, and
    ``is`` comparisons that type checkers understand)."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing.MISSING
"""No answer given to ``resume`` (``None`` is an answer)."""


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for an ``async def`` function and for an object whose ``__call__`` is one,
    defined on its class or inherited (an Agent subclass)."""
    call = next((vars(cls)["__call__"] for cls in type(fn).__mro__ if "__call__" in vars(cls)),
                None)
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def async_variant(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """The coroutine method ``acall`` of a node object that has one, else None.

    A node object may serve both drivers: ``__call__`` for ``flow.run`` and
    ``async def acall(ctx)`` for ``await flow.arun`` (an Agent whose model calls are
    awaited there instead of blocking the event loop)."""
    acall = getattr(fn, "acall", None)
    return acall if acall is not None and inspect.iscoroutinefunction(acall) else None


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A registered node: its function and how it is executed."""

    name: str
    fn: NodeFn
    retries: int = 0
    timeout: float | None = None
    backoff: float = 0.5
    is_async: bool = False
    retry: RetryPolicy | None = None  # when given, instead of retries / backoff

    @property
    def policy(self) -> RetryPolicy:
        return self.retry or RetryPolicy.of(self.retries, self.backoff)


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated flow, as the engine runs it: nodes, ways out, reducers, limits."""

    name: str
    purpose: str
    entry: str
    max_steps: int
    lease_ttl: float
    inline_wait: float  # waits up to this long happen in-process; longer ones park the run
    reducers: Mapping[str, Reducer]
    nodes: Mapping[str, NodeSpec]
    edges: Mapping[str, str]
    routes: Mapping[str, tuple[Router, tuple[str, ...] | None]]
    ref: str | None = None
    ref_file: str | None = None
    telemetry: bool = False  # spans of each run (purpose_agent.telemetry)
    budget: Any = None  # the flow's spending limit, for the agents in it (Flow(budget=...))

    @property
    def has_callable_reducers(self) -> bool:
        """A reducer is a function: it sees the update, so non-JSON is refused first."""
        return any(callable(r) for r in self.reducers.values())

    def node(self, name: str) -> NodeSpec:
        """The node a run is at; FlowChangedError if the flow no longer has it."""
        try:
            return self.nodes[name]
        except KeyError:
            raise FlowChangedError(
                f"the run is at node {name!r}, which flow {self.name!r} no longer has "
                f"(nodes: {', '.join(self.nodes)}); resume it with the code it started with"
            ) from None

    def next_after(self, name: str, data: dict[str, Any]) -> str:
        """The node after ``name`` (or ``END``), given the run data after it completed."""
        if name in self.edges:
            return self.edges[name]
        router, targets = self.routes[name]
        target = router(MappingProxyType(data))
        if target != END and (target not in self.nodes or (targets and target not in targets)):
            raise FlowDefinitionError(
                f"route from {name!r} chose {target!r}, which is not a node of flow "
                f"{self.name!r} (nodes: {', '.join(self.nodes)}, or END)")
        return target


__all__ = ["END", "MISSING", "NodeFn", "NodeSpec", "Plan", "Router", "async_variant",
           "is_async_callable"]
