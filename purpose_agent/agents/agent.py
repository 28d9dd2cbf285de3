"""``Agent``: the tool-calling loop as one flow node, with every model call and every
tool call a durable step.

Guarantees, on top of the flow engine's:

- A model response is committed before the agent acts on it. When the node re-executes
  (resume after a crash, an interrupt or a retry) committed responses are replayed from
  the journal: no request whose response was committed is ever sent again, so no token
  is paid for twice.
- A tool call's result is committed before the model sees it, and replayed on
  re-execution; ``at_most_once`` tools are never re-run when they may have happened.
- Bad input from the model (unknown tool, arguments that are not JSON or do not
  validate) goes back to the model as a tool error; the run does not crash.
- Events (``model.request`` / ``model.response`` for model calls, the engine's
  ``step.started`` / ``step.completed`` for tool calls) carry the model name, token usage
  (and cost, when the model has a :class:`~purpose_agent.agents.Price`), latency and
  short redacted summaries, never credentials. A ``model.response`` event is committed
  with the response it describes, so a run's usage summed from them
  (:func:`purpose_agent.runtime.usage.usage_totals`) counts each paid call exactly once,
  across crashes and resumes.
- With ``output_type``, the node's answer is a value of that type (as JSON) or the node
  fails: the model never gets more than ``output_retries`` second chances.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from purpose_agent.agents._errors import AgentError
from purpose_agent.agents.budget import Budget, RunSpend, Spent, within_budget
from purpose_agent.agents.mcp import MCPTools
from purpose_agent.agents.model import Message, Model, ModelResponse, Price, ToolCall
from purpose_agent.agents.output import OutputSpec
from purpose_agent.agents.tools import Tool, content_for_model, tool
from purpose_agent.flow.context import NodeContext, StepOptions
from purpose_agent.flow.parallel import StepCall, acall_steps, call_steps
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.redact import summarize

# A model call journals its own model.request / model.response events.
_MODEL_CALL = StepOptions(events=False)

Instructions = str | Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True, slots=True)
class _ModelTurn:
    """What the agent's loop asks its driver for: one model call (a durable step)."""

    request: list[Message]
    turn: int


@dataclass(frozen=True, slots=True)
class _ToolCalls:
    """What the agent's loop asks its driver for: these tool calls, each a durable step,
    their outcomes back in this order."""

    calls: list[tuple[Tool, dict[str, Any], StepOptions]]


class Agent:
    """A model that calls tools until it answers, usable as a flow node.

    ``flow.add(agent)`` (or ``flow.node(agent)``) registers it under ``name``. The
    conversation starts from ``data[input_key]`` (a string, or a list of chat message
    dicts); ``instructions`` (a string, or ``fn(data) -> str``) is the system message.
    When the model answers without calling a tool, the node returns
    ``{messages_key: [the conversation, system message excluded], output_key: answer}``
    (``output_key`` defaults to the agent's name); with ``input_key == messages_key``
    each execution of the node continues the stored conversation. If there is no answer
    after ``max_turns`` model calls the node fails with :class:`AgentError`; a model call
    that failed for good fails it with :class:`ModelError`.

    ``output_type`` (a pydantic model, or any type pydantic can validate) makes the
    answer structured: the model is asked for that JSON schema, its final answer is
    validated, and ``output_key`` holds the value as JSON (``model_dump(mode="json")``;
    ``OutputType.model_validate(state.data[key])`` gives the object back). An invalid
    answer goes back to the model with the validation errors, at most
    ``output_retries`` times; then the node fails with :class:`AgentError`.

    ``on_token`` (``fn(text)``) streams the model's answers: it gets each piece of text
    as the model sends it (a model that cannot stream: each answer at once), and so do
    the run's live readers (``flow.stream(run_id)``, ``purpose-agent events
    --follow``); ``stream=True`` streams to those without a callback. Only the
    whole response is journaled, when the call ends; a response replayed from the
    journal is not streamed again. A crash mid-stream re-sends that one request: the
    only model call that is ever paid twice.

    A response's tool calls run together, at most ``max_concurrent_tools`` at a time
    (threads under ``flow.run``, tasks under ``await flow.arun``), each its own durable
    step; the model reads the results in the order it asked for them.

    ``budget`` (a :class:`Budget`) limits what one execution of the node spends: the
    model call that would go over it is not made, the run pauses with
    ``{"budget_reached": "3 of 3 model calls", "message": "budget reached: …; resume
    with a higher budget or stop", "budget": {...}, "spent": {...}, "agent": name}``.
    Resume with ``answer={"budget": {"max_model_calls": 6}}`` (the limits to change;
    None lifts one) to go on, or ``answer={"stop": True}`` (or ``False``) to fail the
    node with :class:`AgentError`; any other answer asks again. A flow's budget
    (``Flow(..., budget=Budget(...))``) is checked the same way against what the whole
    run has spent (``"scope": "flow"`` in the pause), and a raise of it holds for the
    rest of the run.
    """

    def __init__(self, name: str, model: Model, instructions: Instructions = "", *,
                 tools: Iterable[Tool | Callable[..., Any] | MCPTools] = (),
                 max_turns: int = 10,
                 output_key: str | None = None, input_key: str = "input",
                 messages_key: str = "messages", output_type: Any = None,
                 output_retries: int = 1, budget: Budget | None = None,
                 max_concurrent_tools: int = 8,
                 on_token: Callable[[str], None] | None = None,
                 stream: bool | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("an Agent needs a non-empty name (it is the node's name)")
        if not callable(getattr(model, "complete", None)):
            raise TypeError(f"agent {name!r}: {model!r} is not a Model (it has no "
                            "complete(messages, tools) method)")
        if max_turns < 1:
            raise ValueError(f"agent {name!r}: max_turns must be at least 1")
        if not isinstance(max_concurrent_tools, int) or max_concurrent_tools < 1:
            raise ValueError(f"agent {name!r}: max_concurrent_tools must be an int >= 1 (1 "
                             f"runs a response's tool calls one at a time), got "
                             f"{max_concurrent_tools!r}")
        if output_retries < 0:
            raise ValueError(f"agent {name!r}: output_retries must be 0 or more")
        if budget is not None and not isinstance(budget, Budget):
            raise TypeError(f"agent {name!r}: budget must be a Budget, got {budget!r}")
        if budget is not None and budget.max_cost_usd is not None and not isinstance(
                getattr(model, "prices", None), Price):
            raise ValueError(f"agent {name!r}: a budget in dollars needs a model with "
                             "prices, e.g. OpenAIModel(..., prices=Price(...))")
        self.budget = budget
        self.max_concurrent_tools = max_concurrent_tools
        if on_token is not None and not callable(on_token):
            raise TypeError(f"agent {name!r}: on_token must be a function of the text, got "
                            f"{on_token!r}")
        self.on_token = on_token
        self.stream = on_token is not None if stream is None else bool(stream)
        self.name = name
        self.model = model
        self.instructions = instructions
        self.max_turns = int(max_turns)
        self.output_key = output_key or name
        self.input_key = input_key
        self.messages_key = messages_key
        self.output = OutputSpec(output_type, name) if output_type is not None else None
        self.output_retries = int(output_retries)
        # A model whose complete() takes output= is asked for the schema natively; one
        # whose complete() takes on_token= streams.
        self._native_output = _accepts(model, "output")
        self._streams = _accepts(model, "on_token")
        self.tools: dict[str, Tool] = {}
        for item in tools:
            # A set of tools (an MCP server's, mcp_tools(...)) gives each of its tools.
            group = list(item) if isinstance(item, MCPTools) else [item]
            for one in group:
                t = one if isinstance(one, Tool) else tool(one)
                if t.name in self.tools:
                    raise ValueError(f"agent {name!r} has two tools named {t.name!r}; "
                                     "rename one (mcp_tools(..., prefix=...))")
                self.tools[t.name] = t

    # ── the node: one loop, two drivers ──────────────────────────────────────────
    def __call__(self, ctx: NodeContext) -> dict[str, Any]:
        """Run the tool-calling loop inside a flow node (``flow.run``); returns the
        node's update."""
        loop, value = self._loop(ctx), cast(Any, None)
        while True:
            try:
                effect = loop.send(value)
            except StopIteration as done:
                return cast("dict[str, Any]", done.value)
            if isinstance(effect, _ModelTurn):
                value = ModelResponse.from_dict(ctx.call(
                    f"model:{self.name}", self._model_call(ctx, effect), (effect.turn,), {},
                    options=_MODEL_CALL))
            elif len(effect.calls) == 1 or self.max_concurrent_tools == 1:
                value = [ctx.call(f"tool:{t.name}", t.step_fn, (args,), {}, options=opts)
                         for t, args, opts in effect.calls]
            else:
                value = call_steps(ctx, [StepCall(f"tool:{t.name}", t.step_fn, (args,), {},
                                                  opts) for t, args, opts in effect.calls],
                                   max_concurrency=self.max_concurrent_tools)

    async def acall(self, ctx: NodeContext) -> dict[str, Any]:
        """The same loop for ``await flow.arun(...)``: model calls are awaited (the
        model's ``acomplete``, else its ``complete`` in a thread) and tools are awaited
        or run in threads, so one event loop drives many agents at once."""
        loop, value = self._loop(ctx), cast(Any, None)
        while True:
            try:
                effect = loop.send(value)
            except StopIteration as done:
                return cast("dict[str, Any]", done.value)
            if isinstance(effect, _ModelTurn):
                value = ModelResponse.from_dict(await ctx.call(
                    f"model:{self.name}", self._amodel_call(ctx, effect), (effect.turn,), {},
                    options=_MODEL_CALL))
            elif len(effect.calls) == 1 or self.max_concurrent_tools == 1:
                value = [await ctx.call(f"tool:{t.name}", t.astep_fn, (args,), {}, options=opts)
                         for t, args, opts in effect.calls]
            else:
                value = await acall_steps(
                    ctx, [StepCall(f"tool:{t.name}", t.astep_fn, (args,), {}, opts)
                          for t, args, opts in effect.calls],
                    max_concurrency=self.max_concurrent_tools)

    def _loop(self, ctx: NodeContext) -> Generator[_ModelTurn | _ToolCalls, Any, dict[str, Any]]:
        """The agent's decisions, without I/O: it yields the model turn or the tool calls
        to make (the driver makes them as durable steps and sends back the response, or
        the outcomes in the order asked) and returns the node's update. What it does
        itself (budget checks, approvals) only reads the journal or pauses the run."""
        conversation = self._conversation(ctx.data)
        invalid = 0
        budget, spent = self.budget, Spent()
        run = RunSpend.before(ctx)  # the flow's budget, if it has one
        for turn in range(1, self.max_turns + 1):
            if budget is not None:
                budget = within_budget(ctx, budget, spent, agent=self.name)
            if run is not None:
                run.budget = within_budget(ctx, run.budget, run.spent, agent=self.name,
                                           flow=True)
            response = yield _ModelTurn(self._system(ctx.data) + conversation, turn)
            spent.add(response)  # replayed responses too: they were paid for
            if run is not None:
                run.spent.add(response)
            reply = response.message
            conversation.append(reply)
            if not reply.tool_calls:
                if self.output is None:
                    return self._update(conversation, reply.content or "")
                value, problem = self.output.validate(reply.content)
                if problem is None:
                    return self._update(conversation, value)
                invalid += 1
                if invalid > self.output_retries:
                    raise AgentError(
                        f"agent {self.name!r}: the final answer did not validate as "
                        f"{self.output.name} after {invalid} tries: {problem}; raise "
                        "output_retries or make the schema easier to follow")
                # The retry prompt is a plain message, so a replay rebuilds it exactly.
                conversation.append(Message("user", self.output.retry_prompt(problem)))
                continue
            # Every call is checked (and approved, if its tool asks for it) before any
            # runs; the ones to run then run together, and the model reads the results
            # in the order it asked for them.
            contents: list[str | None] = []
            runs: list[tuple[Tool, dict[str, Any], StepOptions]] = []
            for call in reply.tool_calls:
                checked = self._check_call(ctx, call)
                contents.append(checked if isinstance(checked, str) else None)
                if not isinstance(checked, str):
                    runs.append(checked)
            outcomes = iter((yield _ToolCalls(runs)) if runs else ())
            for call, content in zip(reply.tool_calls, contents, strict=True):
                text = content if content is not None else content_for_model(next(outcomes))
                conversation.append(Message("tool", content=text, tool_call_id=call.id))
        raise AgentError(f"agent {self.name!r} made {self.max_turns} model calls without a "
                         "final answer; raise max_turns or tell the model when to stop")

    def _update(self, conversation: list[Message], answer: Any) -> dict[str, Any]:
        return {self.messages_key: [m.to_dict() for m in conversation],
                self.output_key: answer}

    def _conversation(self, data: Mapping[str, Any]) -> list[Message]:
        value = data.get(self.input_key)
        if value is None:
            raise AgentError(f"agent {self.name!r} found no {self.input_key!r} in the run data; "
                             f"start the run with {{{self.input_key!r}: 'the request'}} or set "
                             "input_key=...")
        if isinstance(value, str):
            return [Message("user", value)]
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            return [Message.from_dict(m) for m in value]
        return [Message("user", json.dumps(value, ensure_ascii=False))]

    def _system(self, data: Mapping[str, Any]) -> list[Message]:
        text = self.instructions(data) if callable(self.instructions) else self.instructions
        if self.output is not None and not self._native_output:
            text = f"{text}\n\n{self.output.instruction()}" if text else self.output.instruction()
        return [Message("system", text)] if text else []

    # ── one model call: a durable step ───────────────────────────────────────────
    def _model_call(self, ctx: NodeContext, turn: _ModelTurn) -> Callable[[int], dict[str, Any]]:
        """The step function of one model call (it runs only when this turn's response is
        not in the journal yet; its events are committed together with the response)."""
        specs, options = self._request_options()

        def call_model(number: int) -> dict[str, Any]:
            started = self._requested(ctx, turn.request, number)
            try:
                response = self.model.complete(turn.request, specs,
                                               **self._streaming(ctx, number, options))
            except Exception as exc:
                self._failed(ctx, exc, number, started)
                raise
            return self._responded(ctx, response, number, started)

        return call_model

    def _amodel_call(self, ctx: NodeContext, turn: _ModelTurn
                     ) -> Callable[[int], Awaitable[dict[str, Any]]]:
        """:meth:`_model_call` awaited: the model's ``acomplete`` if it has one, else its
        ``complete`` in a thread, so the event loop is never blocked on the network."""
        specs, options = self._request_options()
        acomplete = getattr(self.model, "acomplete", None)

        async def acall_model(number: int) -> dict[str, Any]:
            started = self._requested(ctx, turn.request, number)
            streaming = self._streaming(ctx, number, options)
            try:
                if acomplete is not None:
                    response = await acomplete(turn.request, specs, **streaming)
                else:
                    response = await asyncio.to_thread(self.model.complete, turn.request,
                                                       specs, **streaming)
            except Exception as exc:
                self._failed(ctx, exc, number, started)
                raise
            return self._responded(ctx, response, number, started)

        return acall_model

    def _request_options(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        options: dict[str, Any] = {}
        if self.output is not None and self._native_output:
            options["output"] = self.output.request
        return [t.schema for t in self.tools.values()], options

    def _streaming(self, ctx: NodeContext, turn: int, options: dict[str, Any]
                   ) -> dict[str, Any]:
        """``options`` with the ``on_token`` that hands each piece of the answer to the
        agent's callback and to the run's live readers (``flow.stream``)."""
        if not self.stream or not self._streams:
            return options
        user = self.on_token

        def on_token(text: str) -> None:
            ctx.live(kind="model.token", agent=self.name, turn=turn, text=text)
            if user is not None:
                user(text)

        return {**options, "on_token": on_token}

    def _requested(self, ctx: NodeContext, request: list[Message], turn: int) -> float:
        last = request[-1]
        ctx.record_event(EventKind.MODEL_REQUEST, agent=self.name, model=self._model_name,
                         provider=getattr(self.model, "provider", None), turn=turn, execution=ctx.execution, messages=len(request), tools=sorted(self.tools),
                         last_role=last.role, last=summarize(last.content or ""))
        return time.monotonic()

    def _failed(self, ctx: NodeContext, exc: Exception, turn: int, started: float) -> None:
        ctx.record_event(EventKind.MODEL_RESPONSE, agent=self.name, model=self._model_name,
                         turn=turn, execution=ctx.execution, latency_ms=_ms(started),
                         error=type(exc).__name__,
                         status_code=getattr(exc, "status_code", None),
                         message=summarize(str(exc), 500))

    def _responded(self, ctx: NodeContext, response: ModelResponse, turn: int,
                   started: float) -> dict[str, Any]:
        if self.stream and not self._streams and response.message.content:
            # A model that cannot stream: the whole answer at once.
            ctx.live(kind="model.token", agent=self.name, turn=turn,
                     text=response.message.content)
            if self.on_token is not None:
                self.on_token(response.message.content)
        prices = getattr(self.model, "prices", None)
        if isinstance(prices, Price):
            response.cost_usd = round(prices.cost(response.usage), 10)
        cost = {} if response.cost_usd is None else {"cost_usd": response.cost_usd}
        ctx.record_event(EventKind.MODEL_RESPONSE, agent=self.name,
                         model=response.model or self._model_name, turn=turn,
                         execution=ctx.execution, latency_ms=_ms(started),
                         usage=response.usage.to_dict(), **cost,
                         finish_reason=response.finish_reason,
                         tool_calls=[c.name for c in response.message.tool_calls],
                         content=summarize(response.message.content or ""))
        return response.to_dict()

    @property
    def _model_name(self) -> str:
        return str(getattr(self.model, "name", type(self.model).__name__))

    # ── one tool call: checks and maybe a person's approval, before it runs ──────
    def _check_call(self, ctx: NodeContext, call: ToolCall
                    ) -> str | tuple[Tool, dict[str, Any], StepOptions]:
        """(tool, arguments) to run, or the text the model reads instead (its mistake, or
        a person's rejection)."""
        target = self.tools.get(call.name)
        if target is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return _error(f"there is no tool {call.name!r}; the tools are: {known}")
        try:
            args = json.loads(call.arguments or "{}", parse_constant=_no_constant)
        except ValueError as exc:
            return _error(f"the arguments for tool {call.name!r} are not valid JSON ({exc}); "
                          "send a JSON object")
        problem = target.validate(args)
        if problem is not None:
            return _error(problem)
        if target.requires_approval:
            answer = ctx.interrupt({"tool": target.name, "args": args, "agent": self.name,
                                    "call_id": call.id})
            approved, args, reason = _decision(answer, args)
            if not approved:
                return json.dumps({"rejected": True, "reason": reason or "no reason given"},
                                  ensure_ascii=False)
            problem = target.validate(args)
            if problem is not None:
                return _error(f"the arguments a person approved are invalid: {problem}")
        # The call's id goes on its step.started event (telemetry's execute_tool span).
        return target, args, replace(target.step_options, labels=(("call_id", call.id),))

    def __repr__(self) -> str:
        output = f", output_type={self.output.name}" if self.output is not None else ""
        return (f"Agent({self.name!r}, model={self.model!r}, tools={sorted(self.tools)}, "
                f"max_turns={self.max_turns}{output})")


def _decision(answer: Any, proposed: dict[str, Any]) -> tuple[bool, Any, str | None]:
    """(approved, arguments, reason) from a person's answer to an approval request.

    Only an explicit approval runs the tool; any other answer is a rejection."""
    if answer is True:
        return True, proposed, None
    if isinstance(answer, dict) and isinstance(answer.get("approve"), bool):
        if answer["approve"]:
            return True, answer.get("args", proposed), None
        reason = answer.get("reason")
        return False, proposed, str(reason) if reason is not None else None
    if answer is False or answer is None:
        return False, proposed, None
    return False, proposed, (f"the approval answer {summarize(answer, 100)} was not understood, "
                             "so the call was not made")


def _accepts(model: Model, option: str) -> bool:
    try:
        params = inspect.signature(model.complete).parameters
    except (TypeError, ValueError):
        return False
    return option in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


__all__ = ["Agent"]
