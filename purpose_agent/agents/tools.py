"""``@tool``: a plain function a model may call, with a JSON schema from its signature.

The schema comes from the type hints (through pydantic) and the docstring: its first
paragraph describes the tool, a Google-style ``Args:`` section describes the arguments.
Model-supplied arguments are validated against the same model before the function runs.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
import typing
from collections.abc import Callable
from typing import Any, overload

from purpose_agent.agents._errors import ToolDefinitionError, ToolError
from purpose_agent.flow.context import StepOptions
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.redact import summarize

_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_ARG_HEADERS = ("Args:", "Arguments:", "Parameters:")


class Tool:
    """A function a model may call. Create one with :func:`tool`.

    Calling the tool object calls the function directly. Inside an :class:`Agent` each
    call is a durable step: its result is committed before the model sees it, and a
    resumed run replays it instead of calling the function again.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None, requires_approval: bool = False,
                 at_most_once: bool = False) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"{fn!r} is not callable; @tool decorates a function")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.name = name or fn.__name__
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", self.name):
            raise ToolDefinitionError(f"tool name {self.name!r} must be 1-64 letters, digits, "
                                      "'_' or '-'; pass name=...")
        summary, arg_docs = _parse_docstring(inspect.getdoc(fn) or "")
        self.description = description or summary or self.name
        self.requires_approval = bool(requires_approval)
        self.at_most_once = bool(at_most_once)
        self._args_model = _args_model(fn, self.name, arg_docs)
        self.parameters = _schema(self._args_model)

        # How an Agent journals each call of this tool (NodeContext.call).
        self.step_options = StepOptions(at_most_once=self.at_most_once)

    def step_fn(self, args: dict[str, Any]) -> dict[str, Any]:
        """One call of the tool as an Agent's durable step runs it (see :meth:`_run`); an
        async tool runs on an event loop of its own (the sync driver has none)."""
        if self.is_async:
            return asyncio.run(self._arun(args))
        return self._run(args)

    async def astep_fn(self, args: dict[str, Any]) -> dict[str, Any]:
        """:meth:`step_fn` for an Agent awaited by ``flow.arun``: an async tool is
        awaited, a sync one runs in a thread (the event loop goes on meanwhile)."""
        if self.is_async:
            return await self._arun(args)
        return await asyncio.to_thread(self._run, args)

    @property
    def schema(self) -> dict[str, Any]:
        """The tool as a model sees it: ``{"name", "description", "parameters"}``."""
        return {"name": self.name, "description": self.description,
                "parameters": self.parameters}

    def validate(self, args: Any) -> str | None:
        """None if ``args`` are valid arguments for this tool, else what is wrong with
        them, phrased for the model."""
        if not isinstance(args, dict):
            return (f"arguments for tool {self.name!r} must be a JSON object, got "
                    f"{type(args).__name__}")
        from pydantic import ValidationError

        try:
            self._args_model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False))
            return summarize(f"invalid arguments for tool {self.name!r}: {problems}", 1000)
        return None

    def _run(self, args: dict[str, Any]) -> dict[str, Any]:
        """Validate, call, and return ``{"ok": True, "result": ...}`` or, for a
        :class:`ToolError`, ``{"ok": False, "error": ...}``, with the call's
        ``latency_ms`` (it shows first in the ``step.completed`` event). The result must be
        JSON."""
        started = time.monotonic()
        try:
            result = self.fn(**self._kwargs(args))
        except ToolError as exc:
            return self._failed(exc, started)
        return self._done(result, started)

    async def _arun(self, args: dict[str, Any]) -> dict[str, Any]:
        """:meth:`_run` for an async tool."""
        started = time.monotonic()
        try:
            result = await self.fn(**self._kwargs(args))
        except ToolError as exc:
            return self._failed(exc, started)
        return self._done(result, started)

    def _kwargs(self, args: dict[str, Any]) -> dict[str, Any]:
        parsed = self._args_model.model_validate(args)
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    def _failed(self, exc: ToolError, started: float) -> dict[str, Any]:
        return {"ok": False, "error": summarize(str(exc), 2000), "latency_ms": _ms(started)}

    def _done(self, result: Any, started: float) -> dict[str, Any]:
        result = _plain(result)
        jsonutil.check(result, f"$.tool[{self.name}].result")
        return {"ok": True, "result": result, "latency_ms": _ms(started)}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        flags = "".join([", requires_approval=True" if self.requires_approval else "",
                         ", at_most_once=True" if self.at_most_once else ""])
        return f"Tool({self.name!r}{flags})"


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(*, name: str | None = None, description: str | None = None,
         requires_approval: bool = False, at_most_once: bool = False
         ) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
         description: str | None = None, requires_approval: bool = False,
         at_most_once: bool = False) -> Any:
    """Make a function a tool an :class:`Agent` may call.

    ``@tool`` or ``@tool(requires_approval=True, at_most_once=True)``. Every call runs as a
    durable step (never repeated once its result is committed). ``requires_approval``
    pauses the run before each call with ``{"tool": name, "args": {...}}`` for a person,
    who resumes with ``{"approve": true}``, ``{"approve": true, "args": {...}}`` (edited),
    ``{"approve": false, "reason": "..."}``, or plain ``true`` / ``false``.
    ``at_most_once`` never re-runs a call that may have happened (the process died
    during it): the run pauses *in doubt* for a person, who resumes with
    ``answer=<the result the model should read>`` or ``retry_in_doubt=True``. Raises
    :class:`ToolDefinitionError` if the signature has no JSON schema.
    """
    def wrap(func: Callable[..., Any]) -> Tool:
        return Tool(func, name=name, description=description,
                    requires_approval=requires_approval, at_most_once=at_most_once)

    return wrap(fn) if fn is not None else wrap


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(first paragraph, {argument: description}) from a Google-style docstring."""
    summary = doc.split("\n\n", 1)[0].strip().replace("\n", " ")
    arg_docs: dict[str, str] = {}
    current: str | None = None
    arg_indent: int | None = None
    in_args = False
    for line in doc.splitlines():
        if not line.startswith((" ", "\t")):  # a section header, text or a blank line
            in_args, current, arg_indent = line.strip() in _ARG_HEADERS, None, None
            continue
        if not in_args:
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent, current = indent, match.group(1).lstrip("*")
            arg_docs[current] = match.group(2).strip()
        elif current is not None:
            arg_docs[current] = f"{arg_docs[current]} {line.strip()}".strip()
    return summary, arg_docs


def _args_model(fn: Callable[..., Any], name: str, arg_docs: dict[str, str]) -> Any:
    try:
        import pydantic
    except ImportError as exc:
        raise ImportError("@tool needs pydantic: pip install 'purpose-agent[openai]'") from exc
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve its type hints ({exc})") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolDefinitionError(f"tool {name!r}: parameter {param.name!r} must be a plain "
                                      "named parameter (no *args, **kwargs or positional-only)")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        if param.name in arg_docs:  # else keep a description from Annotated[..., Field()]
            default = pydantic.Field(default, description=arg_docs[param.name])
        fields[param.name] = (annotation, default)
    try:
        return pydantic.create_model(f"{name}_arguments",
                                     __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    except Exception as exc:
        raise ToolDefinitionError(f"tool {name!r}: its parameters have no JSON schema "
                                  f"({exc}); use JSON-friendly type hints") from exc


def _schema(model: Any) -> dict[str, Any]:
    schema = dict(model.model_json_schema())
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def content_for_model(outcome: Any) -> str:
    """The text a model reads for a tool call's outcome.

    A tool step journals ``{"ok": true, "result": ..., "latency_ms": ...}`` or
    ``{"ok": false, "error": ..., ...}``; any other value is a result a person supplied
    for an in-doubt call, taken as is."""
    if isinstance(outcome, dict) and isinstance(outcome.get("ok"), bool) and (
            set(outcome) - {"latency_ms"}) in ({"ok", "result"}, {"ok", "error"}):
        if not outcome["ok"]:
            return json.dumps({"error": outcome["error"]}, ensure_ascii=False)
        outcome = outcome["result"]
    return outcome if isinstance(outcome, str) else json.dumps(outcome, ensure_ascii=False)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _plain(value: Any) -> Any:
    """A tool's return value as JSON data: pydantic models, dataclasses, dates … are
    converted the way pydantic's JSON mode does; anything else is left for
    ``jsonutil.check`` to name."""
    if isinstance(value, (str, int, bool, type(None))):
        return value
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value)
    except Exception:
        return value


__all__ = ["Tool", "content_for_model", "tool"]
