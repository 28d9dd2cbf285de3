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
    """Tokens a model call consumed, as the server reported them.

    ``input_tokens`` counts the whole prompt, cached parts included (OpenAI's
    ``prompt_tokens``; Anthropic's input, cache-read and cache-write tokens together).
    ``cached_input_tokens`` is the part read from the provider's prompt cache (billed
    cheaper), ``cache_write_tokens`` the part written to it (Anthropic bills it dearer).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_input_tokens": self.cached_input_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "total_tokens": self.total_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(*(int(data.get(name) or 0) for name in _USAGE_FIELDS))


_USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens")


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in US dollars per million tokens.

    ``cached_input_per_mtok`` (prompt-cache reads) and ``cache_write_per_mtok``
    (prompt-cache writes) default to ``input_per_mtok``. Give a model one
    (``OpenAIModel(..., prices=Price(...))``) and every call's cost is journaled with its
    usage, summed per run, and counted by a :class:`~purpose_agent.agents.Budget`.
    """

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def __post_init__(self) -> None:
        for name in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok",
                     "cache_write_per_mtok"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"Price.{name} must be a number >= 0 (US dollars per "
                                 f"million tokens), got {value!r}")

    def cost(self, usage: Usage) -> float:
        """The cost of ``usage`` in US dollars."""
        cached = self.input_per_mtok if self.cached_input_per_mtok is None \
            else self.cached_input_per_mtok
        write = self.input_per_mtok if self.cache_write_per_mtok is None \
            else self.cache_write_per_mtok
        plain = max(usage.input_tokens - usage.cached_input_tokens - usage.cache_write_tokens, 0)
        return (plain * self.input_per_mtok + usage.cached_input_tokens * cached
                + usage.cache_write_tokens * write
                + usage.output_tokens * self.output_per_mtok) / 1_000_000


@dataclass(slots=True)
class ModelResponse:
    """What one model call returned: the assistant message, token usage, the model that
    answered and why it stopped (``"stop"``, ``"tool_calls"``, ``"length"``, …: OpenAI's
    words; other providers' reasons are mapped to them). ``cost_usd`` is set by the
    :class:`~purpose_agent.agents.Agent` when the model has a :class:`Price`."""

    message: Message
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message.to_dict(), "usage": self.usage.to_dict(),
               "model": self.model, "finish_reason": self.finish_reason}
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelResponse:
        return cls(message=Message.from_dict(data["message"]),
                   usage=Usage.from_dict(data.get("usage")), model=str(data.get("model", "")),
                   finish_reason=data.get("finish_reason"), cost_usd=data.get("cost_usd"))


@runtime_checkable
class Model(Protocol):
    """A chat model. ``name`` identifies it in events.

    ``complete`` gets the whole conversation (system message first) and the tools the
    model may call, as ``{"name", "description", "parameters"}`` JSON-schema dicts. It
    returns the model's message, or raises (e.g. :class:`ModelError`) once the call has
    failed for good; retrying transient failures is the model's own business.

    Optional: a ``prices`` attribute (a :class:`Price`) makes calls' costs counted, and a
    ``complete`` that accepts ``output=`` (``{"name", "description", "schema"}``) is asked
    for a final answer in that JSON schema natively (else the agent asks in its system
    message). Either way the agent validates the answer.
    """

    name: str

    def complete(self, messages: list[Message], tools: list[dict[str, Any]]) -> ModelResponse:
        ...


__all__ = ["Message", "Model", "ModelResponse", "Price", "ToolCall", "Usage"]
