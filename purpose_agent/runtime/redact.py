"""Keep secrets out of the journal, and keep what is shown of a value short.

Anything written to events or state passes through here when it may hold credentials
(tool arguments, model requests): values under secret-looking keys are replaced, and
bearer tokens / API-key-shaped strings inside text are masked.
"""

from __future__ import annotations

import re
from typing import Any

from purpose_agent.runtime import jsonutil

REDACTED = "[redacted]"
# A whole word of the key: "access_token" and "X-Api-Key" are secrets, "max_tokens" and
# "input_tokens" (token counts) are not.
_SECRET_KEY = re.compile(
    r"(?:^|[-_ .])(?:api[-_]?key|authorization|password|passwd|secret|token|credentials?|"
    r"cookie|session[-_]?key|private[-_]?key)(?:$|[-_ .])",
    re.IGNORECASE,
)
_SECRET_TEXT = re.compile(
    r"(Bearer\s+[A-Za-z0-9._~+/=-]{8,}|\bsk-[A-Za-z0-9_-]{8,}|\b(?:ghp|gho|xox[abp])_?[A-Za-z0-9-]{10,})"
)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys and token-shaped strings masked."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_TEXT.sub(REDACTED, value)
    return value


def redact_text(text: str, *secrets: str | None) -> str:
    """``text`` with token-shaped strings and each of ``secrets`` masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _SECRET_TEXT.sub(REDACTED, text)


def summarize(value: Any, limit: int = 200) -> str:
    """A short, redacted, JSON-ish text form of ``value`` for events and displays."""
    text = value if isinstance(value, str) else jsonutil.canonical(redact(value))
    if isinstance(value, str):
        text = redact_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
