"""The script format shared by the test doubles, and ``ScriptedModel`` (no HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.agents.model import Message, ModelResponse, Price, ToolCall, Usage


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *,
              id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A scripted tool call: ``tool_call("lookup", order_id="A1")``. ``arguments`` may be
    raw text, to script a model that sends broken JSON."""
    entry: dict[str, Any] = {"name": name,
                             "arguments": arguments if arguments is not None else kwargs}
    if id is not None:
        entry["id"] = id
    return entry


def response_for(entry: Any, number: int, model: str) -> ModelResponse:
    """The ModelResponse a script entry describes (``number`` makes call ids unique)."""
    if isinstance(entry, ModelResponse):
        return entry
    if isinstance(entry, Message):
        return ModelResponse(entry, model=model)
    if isinstance(entry, str):
        entry = {"content": entry}
    if not isinstance(entry, dict):
        raise TypeError(f"script entry #{number} is a {type(entry).__name__}; use a str, a "
                        "dict, a Message or a ModelResponse")
    calls = []
    for i, call in enumerate(entry.get("tool_calls") or ()):
        args = call.get("arguments", {})
        calls.append(ToolCall(id=call.get("id") or f"call_{number}_{i}", name=call["name"],
                              arguments=args if isinstance(args, str) else json.dumps(args)))
    usage = entry.get("usage") or {}
    return ModelResponse(
        Message("assistant", content=entry.get("content"), tool_calls=calls),
        usage=Usage(int(usage.get("input_tokens", 10)), int(usage.get("output_tokens", 5)),
                    int(usage.get("cached_input_tokens", 0)),
                    int(usage.get("cache_write_tokens", 0))),
        model=model,
        finish_reason=entry.get("finish_reason") or ("tool_calls" if calls else "stop"))


class ScriptedModel:
    """A :class:`~purpose_agent.agents.model.Model` that returns scripted responses in
    order. ``calls`` counts the calls; ``requests`` keeps each call's messages (as dicts),
    ``tools`` each call's tool names and ``outputs`` each call's requested output schema
    (None for none). An entry that is an exception is raised. Running out of script
    raises :class:`ModelError`. ``prices`` prices its calls like a real model's."""

    provider = "purpose_agent.scripted"  # gen_ai.provider.name in telemetry

    def __init__(self, responses: Iterable[Any], *, name: str = "scripted",
                 prices: Price | None = None) -> None:
        self.name = name
        self.script = list(responses)
        self.prices = prices
        self.calls = 0
        self.requests: list[list[dict[str, Any]]] = []
        self.tools: list[list[str]] = []
        self.outputs: list[dict[str, Any] | None] = []

    def complete(self, messages: list[Message], tools: list[dict[str, Any]], *,
                 output: dict[str, Any] | None = None) -> ModelResponse:
        self.calls += 1
        self.requests.append([m.to_dict() for m in messages])
        self.tools.append([t["name"] for t in tools])
        self.outputs.append(output)
        if self.calls > len(self.script):
            raise ModelError(f"ScriptedModel {self.name!r} was called {self.calls} times but "
                             f"has {len(self.script)} scripted responses")
        entry = self.script[self.calls - 1]
        if isinstance(entry, BaseException):
            raise entry
        return response_for(entry, self.calls, self.name)

    def __repr__(self) -> str:
        return f"ScriptedModel({self.name!r}, calls={self.calls}/{len(self.script)})"


__all__ = ["ScriptedModel", "response_for", "tool_call"]
