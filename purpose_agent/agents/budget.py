"""``Budget``: limits on what one execution of an :class:`~purpose_agent.agents.Agent`
(``Agent(budget=...)``) or a whole run (``Flow(budget=...)``) may spend on models,
checked before every model call.

What was spent is summed from the agent's model responses as journaled (replayed ones
included), so a crash and resume neither forgets nor double counts a call, and the
budget is enforced the same way after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from purpose_agent.agents._errors import AgentError
from purpose_agent.agents.model import ModelResponse
from purpose_agent.flow.context import NodeContext
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.redact import summarize
from purpose_agent.runtime.usage import money


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``max_model_calls`` model calls, ``max_tokens`` tokens (input + output)
    and ``max_cost_usd`` dollars (the model needs a
    :class:`~purpose_agent.agents.Price`) per execution of the agent; None is no limit.

    Before each model call the agent checks what it has spent; once a limit is reached
    the call is not made and the run pauses with ``{"budget_reached": ...}`` for a
    person. A call's size is unknown before it is made, so a token or cost limit stops
    the call after the one that reached it (that one was within budget when sent).
    """

    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_model_calls: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"Budget.{f.name} must be a number >= 0 or None, got "
                                 f"{value!r}")

    def reached(self, spent: Spent) -> str | None:
        """What limit ``spent`` has reached, in words, or None to go on."""
        if self.max_model_calls is not None and spent.model_calls >= self.max_model_calls:
            return f"{spent.model_calls} of {self.max_model_calls} model calls"
        if self.max_tokens is not None and spent.tokens >= self.max_tokens:
            return f"{spent.tokens:,} of {self.max_tokens:,} tokens"
        if self.max_cost_usd is not None and spent.cost_usd >= self.max_cost_usd:
            return f"${money(spent.cost_usd)} of ${money(self.max_cost_usd)}"
        return None

    def raised(self, limits: Any) -> Budget:
        """This budget with the limits a person's answer sets (None removes a limit)."""
        known = {f.name for f in fields(self)}
        if not isinstance(limits, dict) or not limits or set(limits) - known:
            raise ValueError(f"a budget answer sets some of {sorted(known)}, got "
                             f"{limits!r}")
        return replace(self, **limits)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Spent:
    """What an agent's model calls have cost so far."""

    model_calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, response: ModelResponse) -> None:
        self.model_calls += 1
        self.tokens += response.usage.total_tokens
        self.cost_usd += response.cost_usd or 0.0

    def add_event(self, payload: dict[str, Any]) -> None:
        """Count a journaled ``model.response`` (one with usage: a call that answered)."""
        usage = payload.get("usage")
        if not isinstance(usage, dict):
            return
        self.model_calls += 1
        tokens = usage.get("total_tokens")
        self.tokens += tokens if isinstance(tokens, int) else 0
        cost = payload.get("cost_usd")
        self.cost_usd += cost if isinstance(cost, (int, float)) else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"model_calls": self.model_calls, "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 10)}


@dataclass(slots=True)
class RunSpend:
    """A flow's budget as it stands for one node execution, and what the run spent
    before it (from the journal: the same whenever the execution re-executes)."""

    budget: Budget
    spent: Spent

    @classmethod
    def before(cls, ctx: NodeContext) -> RunSpend | None:
        """None if the flow has no budget."""
        budget = ctx.flow_budget
        if not isinstance(budget, Budget):
            return None
        spent = Spent()
        for event in ctx.earlier_events([str(EventKind.MODEL_RESPONSE),
                                         str(EventKind.NODE_PROGRESS)]):
            if event.kind == EventKind.MODEL_RESPONSE:
                spent.add_event(event.payload)
            elif isinstance(raised := event.payload.get(_RAISED), dict):
                budget = Budget(**{k: raised.get(k) for k in budget.to_dict()})
        return cls(budget, spent)


_RAISED = "flow_budget"  # a node.progress event's key: the flow's budget, raised


def within_budget(ctx: NodeContext, budget: Budget, spent: Spent, *, agent: str,
                  flow: bool = False) -> Budget:
    """The budget to go on with: this one if it is not reached, else the one a person
    raised it to (the run pauses to ask). Answers are journaled, so a re-executed node
    rebuilds the same budget at the same turn; a raise of the flow's budget is also
    journaled as a ``node.progress`` event, for the run's later nodes."""
    problem = None
    scope = "flow budget" if flow else "budget"
    while (reached := budget.reached(spent)) is not None:
        payload = {"budget_reached": reached, "agent": agent,
                   "scope": "flow" if flow else "agent",
                   "message": f"{scope} reached: {reached}; resume with a higher budget "
                              'or stop (answer {"budget": {...}} or {"stop": true})',
                   "budget": budget.to_dict(), "spent": spent.to_dict()}
        if problem:
            payload["problem"] = problem
        answer = ctx.interrupt(payload)
        if answer is False or answer is None or (
                isinstance(answer, dict) and answer.get("stop") is True):
            raise AgentError(f"agent {agent!r} stopped at its {scope} ({reached}) by a "
                             "person's answer")
        try:
            budget = budget.raised(answer.get("budget") if isinstance(answer, dict) else None)
            problem = None
        except ValueError as exc:
            problem = (f"the answer {summarize(answer, 200)} was not understood ({exc}); "
                       'answer {"budget": {"max_model_calls": 10}} or {"stop": true}')
            continue
        if flow:
            ctx.emit("flow budget raised", execution=ctx.execution,
                     **{_RAISED: budget.to_dict()})
    return budget


__all__ = ["Budget", "RunSpend", "Spent", "within_budget"]
