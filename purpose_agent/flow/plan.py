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
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from purpose_agent.errors import FlowChangedError, FlowDefinitionError
from purpose_agent.flow.reducers import Reducer

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


# Retry policies for nodes and durable steps. The waits between attempts are durable
# timers: the attempt that failed and the time the next one may start are journaled
# before the wait begins, so a crash during the wait resumes the wait (at its journaled
# end), never the attempt count (see node_retry.py and NodeContext.call).
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing node or step is retried.

    ``max_attempts`` counts the first call (1: no retry). Attempt *n* (n ≥ 1) failing is
    followed by a wait of ``initial × backoff^(n-1)`` seconds, at most ``max_interval``.
    An exception whose type is in ``non_retryable`` (or a subclass) is not retried, nor
    is a mistake in the flow itself (``FlowDefinitionError``, ``FlowChangedError``):
    calling again cannot mend it. An
    exception with a numeric ``retry_after`` attribute (seconds, e.g. from an HTTP 429 or
    503 ``Retry-After`` header) waits that long instead of the computed wait.
    """

    max_attempts: int = 3
    initial: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise FlowDefinitionError(f"RetryPolicy: max_attempts must be a whole number >= 1 "
                                      f"(the first call counts), got {self.max_attempts!r}")
        for name in ("initial", "backoff", "max_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or math.isnan(value) or value < 0:
                raise FlowDefinitionError(f"RetryPolicy: {name} must be a number >= 0, got "
                                          f"{value!r}")
        if not isinstance(self.non_retryable, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in self.non_retryable):
            raise FlowDefinitionError("RetryPolicy: non_retryable is a tuple of exception "
                                      f"classes, got {self.non_retryable!r}")

    @classmethod
    def of(cls, retries: int, backoff: float) -> RetryPolicy:
        """The policy of the older ``retries=`` / ``backoff=`` options: ``retries`` more
        attempts after ``backoff × 2^n`` seconds, with no upper bound."""
        return cls(max_attempts=retries + 1, initial=backoff, backoff=2.0,
                   max_interval=math.inf)

    def delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait after attempt ``attempt`` failed with ``exc``, or None when it
        is not retried (the last attempt, or a non-retryable exception)."""
        if attempt >= self.max_attempts or isinstance(exc, self.non_retryable) \
                or isinstance(exc, _NEVER_RETRIED):
            return None
        after = getattr(exc, "retry_after", None)
        if isinstance(after, (int, float)) and not isinstance(after, bool) \
                and math.isfinite(after) and after >= 0:
            return float(after)
        return float(min(self.initial * self.backoff ** (attempt - 1), self.max_interval))



# The flow's own mistakes: another attempt runs the same code and fails the same way.
_NEVER_RETRIED = (FlowDefinitionError, FlowChangedError)


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
    # Each driver's observer of the run (Flow(telemetry=...)): flow/observe.py's
    # ObserverFactory, (store, lease owner) -> observer.
    observer: Callable[[Any, str], Any] | None = None
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


__all__ = ["END", "MISSING", "NodeFn", "NodeSpec", "Plan", "RetryPolicy", "Router",
           "async_variant", "is_async_callable"]
