"""What the engine's drivers do after a node attempt: the node returned (commit its
completion) or raised (pause, retry, fail, or stop the driver). Mixed into
:class:`~purpose_agent.flow.engine.Runner`; one place for both drivers' decisions."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from purpose_agent.errors import StoreError
from purpose_agent.flow.context import NodeContext
from purpose_agent.flow.plan import NodeSpec
from purpose_agent.flow.signals import InDoubt, LeaseLost, Park, Pause, find_signal
from purpose_agent.runtime.events import EventKind


class _Outcome(Enum):
    """What the driver does after a node attempt (besides sleeping before a retry)."""

    NEXT = "next"  # the node completed: on to the next one
    STOP = "stop"  # the run paused or failed (committed)


NEXT, STOP = _Outcome.NEXT, _Outcome.STOP



class Outcomes:
    """The decisions after a node attempt (the Runner's own methods do the writing)."""

    if TYPE_CHECKING:  # what the Runner provides
        def complete(self, spec: NodeSpec, ctx: NodeContext, update: Any) -> None: ...
        async def acomplete(self, spec: NodeSpec, ctx: NodeContext, update: Any) -> None: ...
        def attempt_failed(self, ctx: NodeContext, spec: NodeSpec, attempt: int,
                           exc: BaseException) -> float | _Outcome: ...
        def event(self, kind: EventKind, node: str | None = None, /,
                  **payload: Any) -> None: ...
        def pause(self, signal_: Pause | InDoubt | Park) -> None: ...

    def node_returned(self, spec: NodeSpec, ctx: NodeContext, attempt: int,
                      update: Any) -> float | _Outcome:
        """The node returned: commit its completion, unless it raised a pause that its
        own code caught (then its return is discarded and the run pauses)."""
        if ctx._pause is not None:
            return self.paused(ctx, ctx._pause, "returned normally")
        try:
            self.complete(spec, ctx, update)
        except BaseException as exc:  # refused update, routing error, store error
            return self.node_raised(spec, ctx, attempt, exc)
        return NEXT

    async def anode_returned(self, spec: NodeSpec, ctx: NodeContext, attempt: int,
                             update: Any) -> float | _Outcome:
        """:meth:`node_returned` from the async driver."""
        if ctx._pause is not None:
            return self.paused(ctx, ctx._pause, "returned normally")
        try:
            await self.acomplete(spec, ctx, update)
        except BaseException as exc:
            return self.node_raised(spec, ctx, attempt, exc)
        return NEXT

    def node_raised(self, spec: NodeSpec, ctx: NodeContext, attempt: int,
                    exc: BaseException) -> float | _Outcome:
        """The node (or its completion) raised: pause, retry, fail, or stop the driver.

        Returns the delay before a retry, NEXT or STOP; re-raises what stops the driver
        (a lost lease, a store error, a BaseException that is not the engine's)."""
        signal_ = ctx._pause or find_signal(exc, (Pause, InDoubt, Park))
        if isinstance(signal_, (Pause, InDoubt, Park)):
            # Also when the signal comes wrapped in an exception group (asyncio.TaskGroup)
            # or the node turned it into another error after catching it.
            carried = find_signal(exc, type(signal_)) is signal_
            caught = ctx._pause_swallowed or not carried
            outcome = self.paused(ctx, signal_, f"raised {type(exc).__name__}" if caught else None)
            if not carried and not isinstance(exc, Exception):
                raise exc  # paused; a KeyboardInterrupt or a cancelled task still goes on
            return outcome
        lost = find_signal(exc, LeaseLost)
        if lost is not None:
            raise lost
        if isinstance(exc, StoreError) or not isinstance(exc, Exception):
            raise exc  # drive() gives the lease back on its way out
        return self.attempt_failed(ctx, spec, attempt, exc)

    def paused(self, ctx: NodeContext, signal_: Pause | InDoubt | Park,
               caught: str | None) -> _Outcome:
        if caught is not None:
            step_name = signal_.pending["kind"] if isinstance(signal_, Park) \
                else signal_.record.name
            kind = {Pause: "interrupt", InDoubt: "in_doubt", Park: "wait"}[type(signal_)]
            self.event(EventKind.NODE_SIGNAL_CAUGHT, ctx.node, how=caught, step=step_name,
                       signal=kind,
                       message="the node's own code caught the signal; the run pauses "
                               "anyway and what the node did after it is discarded")
        self.pause(signal_)
        return STOP
