"""A node's retries (``@flow.node(retry=RetryPolicy(...))`` or ``retries=``): the wait
before each one is a durable timer.

When an attempt fails and the policy allows another, the attempt that comes next and the
time it may start are journaled (the node execution's *retry record*, with the
``node.failed`` event) before the wait begins. A driver that starts the node later — after
a crash, or once a parked run is woken — reads that record: it goes on with that attempt
count and waits only for what is left of the journaled wait.
"""

from __future__ import annotations

import logging
from typing import Protocol

from purpose_agent.flow.parking import Parker, park
from purpose_agent.flow.plan import NodeSpec
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.journal import Delta, StepRecord
from purpose_agent.runtime.redact import summarize


class Runner(Parker, Protocol):
    """What retrying a node needs of its driver (flow/engine.py's Runner)."""

    inline_wait: float
    reload_steps: bool

    def clock(self) -> float: ...
    def fail(self, node: str, attempt: int, exc: BaseException) -> None: ...
    def commit(self, *, state: bool = True, delta: Delta | None = None,
               steps: list[StepRecord] | None = None, release: bool = False,
               snapshot: bool | None = None) -> None: ...


class NodeContext(Protocol):
    """What it needs of the node attempt (flow/context.py's NodeContext)."""

    node: str
    _execution: int
    _backoff_until: dict[str, float]

logger = logging.getLogger("purpose_agent")
RETRY_INDEX = 1 << 30  # a node execution's retry record: never the place of one of its steps


def retry_key(execution: int, node: str) -> str:
    return f"{execution}/{node}/@retry"


def retry_record(execution: int, node: str, attempt: int, status: str,
                 wake_at: float | None) -> StepRecord:
    """The node execution's retry record: the attempt that comes next and when it may
    start ("waiting"), or "cleared" once the node failed for good (a resume of the failed
    run starts again at attempt 1). Its index is past any step's place in the node, so
    it lists after them."""
    return StepRecord(key=retry_key(execution, node), step=execution, node=node,
                      index=RETRY_INDEX,
                      name="retry", kind="retry", status=status, attempt=attempt,
                      result={"wake_at": wake_at})


def next_attempt(records: list[StepRecord]) -> StepRecord | None:
    """The journaled retry still to come in a node execution's records, if any."""
    return next((r for r in records if r.kind == "retry" and r.status == "waiting"), None)


def hold(runner: Runner, ctx: NodeContext) -> float | None:
    """Before a node attempt: seconds left of the journaled wait before it (0: none), or
    None when the rest is long enough to park the run for (it is parked)."""
    wake_at = ctx._backoff_until.pop(retry_key(ctx._execution, ctx.node), None)
    if wake_at is None:
        return 0.0
    left = wake_at - runner.clock()
    if left <= runner.inline_wait:
        return max(left, 0.0)
    park(runner, {"kind": "sleep", "wake_at": wake_at, "reason": "retry", "node": ctx.node},
         wake_at)
    return None


def after_failure(runner: Runner, ctx: NodeContext, spec: NodeSpec, attempt: int,
                  exc: BaseException) -> float | None:
    """Journal a failed attempt and when the next one may start. Returns the seconds to
    wait here before the retry, or None (the run failed, or is parked until then)."""
    runner.reload_steps = True
    policy = spec.policy
    delay = policy.delay(attempt, exc)
    if delay is None:
        runner.fail(spec.name, attempt, exc)
        return None
    wake_at = runner.clock() + delay
    runner.event(EventKind.NODE_FAILED, spec.name, attempt=attempt,
                 error=type(exc).__name__, message=summarize(str(exc), 1000), retry_in=delay)
    runner.commit(state=False,
                  steps=[retry_record(ctx._execution, ctx.node, attempt + 1, "waiting", wake_at)])
    logger.warning("run %s: node %s failed (attempt %d of %d), retrying: %s: %s",
                   runner.state.run_id, spec.name, attempt, policy.max_attempts,
                   type(exc).__name__, summarize(str(exc), 1000))
    ctx._backoff_until[retry_key(ctx._execution, ctx.node)] = wake_at
    return hold(runner, ctx)


__all__ = ["after_failure", "hold", "next_attempt", "retry_key", "retry_record"]
