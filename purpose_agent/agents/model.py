"""The model protocol: chat messages and tool schemas in, one message out.

Everything that crosses the protocol is a plain dataclass with ``to_dict`` /
``from_dict`` in the OpenAI chat wire format, so a response is journaled as JSON and a
replayed response is indistinguishable from a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from purpose_agent.runtime import jsonutil


@dataclass(slots=True)
class ToolCall:
    """A tool call proposed by a model. ``arguments`` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str = "{}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        function = data.get("function") or {}
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):  # some servers send an object, not JSON text
            arguments = jsonutil.canonical(arguments)
        return cls(id=str(data.get("id") or ""), name=str(function.get("name") or ""),
                   arguments=arguments or "{}")


@dataclass(slots=True)
class Message:
    """One chat message: ``system``, ``user``, ``assistant`` (maybe with tool calls) or
    ``tool`` (the result of the call ``tool_call_id``)."""

    role: str
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(role=str(data["role"]), content=data.get("content"),
                   tool_calls=[ToolCall.from_dict(c) for c in data.get("tool_calls") or ()],
                   tool_call_id=data.get("tool_call_id"), name=data.get("name"))


@dataclass(slots=True)
class Usage:
    """Tokens a model call consumed, as the server reported them."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(int(data.get("input_tokens") or 0), int(data.get("output_tokens") or 0))


@dataclass(slots=True)
class ModelResponse:
    """What one model call returned: the assistant message, token usage, the model that
    answered and why it stopped."""

    message: Message
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message.to_dict(), "usage": self.usage.to_dict(),
                "model": self.model, "finish_reason": self.finish_reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(message=Message.from_dict(data["message"]),
                   usage=Usage.from_dict(data.get("usage")), model=str(data.get("model", "")),
                   finish_reason=data.get("finish_reason"))


@runtime_checkable
class Model(Protocol):
    """A chat model. ``name`` identifies it in events.

    ``complete`` gets the whole conversation (system message first) and the tools the
    model may call, as ``{"name", "description", "parameters"}`` JSON-schema dicts. It
    returns the model's message, or raises (e.g. :class:`ModelError`) once the call has
    failed for good; retrying transient failures is the model's own business.
    """

    name: str

    def complete(self, messages: list[Message], tools: list[dict[str, Any]]) -> ModelResponse:
        ...


__all__ = ["Message", "Model", "ModelResponse", "ToolCall", "Usage"]
