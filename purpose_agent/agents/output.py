"""Structured output: an agent's final answer validated against a type (``output_type``).

The type's JSON schema is what the model is asked for (natively, e.g. OpenAI's
``response_format``, when the model supports it; else in the system message). Whatever
comes back is validated with pydantic; an invalid answer goes back to the model with the
validation errors. Types whose schema is not a JSON object (``list[Item]``, ``int`` …)
are asked for wrapped as ``{"response": ...}``, as most providers want an object.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from purpose_agent.runtime.redact import summarize

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n?(.*?)\n?```$", re.DOTALL)


class OutputSpec:
    """How an agent asks for, and checks, a final answer of type ``output_type``."""

    def __init__(self, output_type: Any, agent: str) -> None:
        try:
            from pydantic import TypeAdapter
        except ImportError as exc:
            raise ImportError("output_type needs pydantic: pip install "
                              "'purpose-agent[openai]'") from exc
        self.type = output_type
        try:
            self._adapter: Any = TypeAdapter(output_type)
            schema = dict(self._adapter.json_schema())
        except Exception as exc:
            raise TypeError(f"agent {agent!r}: output_type {output_type!r} has no JSON schema "
                            f"({exc}); use a pydantic model or JSON-friendly type") from exc
        self.wrapped = schema.get("type") != "object"
        if self.wrapped:
            defs = schema.pop("$defs", None)
            schema = {"type": "object", "properties": {"response": schema},
                      "required": ["response"], **({"$defs": defs} if defs else {})}
        self.schema = schema
        raw_name = getattr(output_type, "__name__", "") or "output"
        self.name = re.sub(r"[^A-Za-z0-9_-]", "_", raw_name)[:64] or "output"
        doc = inspect.getdoc(output_type) if inspect.isclass(output_type) else None
        own_doc = doc and doc != inspect.getdoc(type(output_type)) and not doc.startswith(
            "Usage docs:")  # pydantic's BaseModel docstring, inherited
        self.description = doc.split("\n\n", 1)[0].strip() if own_doc and doc else ""

    @property
    def request(self) -> dict[str, Any]:
        """What a model's ``complete(..., output=...)`` gets."""
        return {"name": self.name, "description": self.description, "schema": self.schema}

    def instruction(self) -> str:
        """The system-message text for a model with no native structured output."""
        return ("When you give your final answer, reply with only a JSON object (no prose, "
                "no code fence) that matches this JSON schema:\n"
                + json.dumps(self.schema, ensure_ascii=False))

    def validate(self, text: str | None) -> tuple[Any, str | None]:
        """(the validated value as JSON data, None) or (None, what is wrong, for the
        model)."""
        from pydantic import ValidationError

        body = (text or "").strip()
        fenced = _FENCE.match(body)
        if fenced:  # models often fence JSON despite being told not to
            body = fenced.group(1).strip()
        if not body:
            return None, "the answer was empty"
        try:
            data = json.loads(body)
        except ValueError as exc:
            return None, f"the answer is not JSON ({exc})"
        if self.wrapped:
            if not isinstance(data, dict) or set(data) != {"response"}:
                return None, 'the answer must be a JSON object {"response": ...}'
            data = data["response"]
        try:
            value = self._adapter.validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'the answer'}: {err['msg']}"
                for err in exc.errors(include_url=False, include_input=False))
            return None, summarize(problems, 1500)
        return self._adapter.dump_python(value, mode="json"), None

    def retry_prompt(self, problem: str) -> str:
        """The message that sends an invalid answer back to the model."""
        return (f"Your final answer did not validate against the {self.name} schema: "
                f"{problem}. Fix the errors and reply with only the corrected JSON.")


__all__ = ["OutputSpec"]
