"""Keep secrets out of the journal, and keep what is shown of a value short.

Anything written to events or state passes through here when it may hold credentials
(tool arguments, model requests): values under secret-looking keys are replaced, and
bearer tokens / API-key-shaped strings inside text are masked.
"""

from __future__ import annotations

import re
import traceback
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


# How much more than what is shown summarize() reads of each string: a token that starts
# in the shown part has at least this many of its characters in the part redacted (the
# patterns match from 8-12), so it is recognised and masked whole.
_MARGIN = 256


def summarize(value: Any, limit: int = 200) -> str:
    """A short, redacted, JSON-ish text form of ``value`` for events and displays.

    Only the start of the text is shown, so only the start of each string (and of each
    list) is redacted and encoded: a 4 KB model reply costs its first few hundred
    characters, not a regex over all of it (~160 µs per durable step, measured)."""
    cap = limit + _MARGIN
    if isinstance(value, str):
        text = redact_text(value[:cap])
    else:
        text = jsonutil.canonical(redact(_clip(value, cap)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clip(value: Any, cap: int) -> Any:
    """``value`` with strings and lists cut to ``cap``: its canonical text reads the same
    for at least ``cap`` characters (each element or character writes at least one)."""
    if isinstance(value, str):
        return value[:cap]
    if isinstance(value, dict):
        return {k: _clip(v, cap) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip(v, cap) for v in value[:cap]]
    return value


TRACEBACK_LIMIT = 8000


def traceback_text(exc: BaseException, limit: int = TRACEBACK_LIMIT, *,
                   skip_leading: str = "") -> str:
    """The traceback of ``exc`` as text (with its causes), redacted, at most ``limit``
    characters: a longer one keeps its first quarter and its end (the innermost frames
    and the error itself), the cut marked with how much was left out. Leading frames of
    files under ``skip_leading`` (the engine that called the failing code) are left out."""
    tb = exc.__traceback__
    while (skip_leading and tb is not None and tb.tb_next is not None
           and tb.tb_frame.f_code.co_filename.startswith(skip_leading)):
        tb = tb.tb_next
    text = redact_text("".join(traceback.format_exception(type(exc), exc, tb)))
    if len(text) <= limit:
        return text
    head = limit // 4
    marker = f"\n  … ({len(text) - limit} characters cut) …\n"
    tail = limit - head - len(marker)
    return text[:head] + marker + text[-tail:]
