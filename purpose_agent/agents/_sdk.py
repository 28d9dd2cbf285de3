"""What the official provider SDKs (``openai``, ``anthropic``) share: both raise the same
family of errors (``APIStatusError``, ``APITimeoutError``, ``APIConnectionError``), turned
here into one :class:`ModelError` wording, with the API key redacted."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from purpose_agent.agents._errors import ModelError
from purpose_agent.runtime.redact import redact_text, summarize


def sdk_error(sdk: ModuleType, exc: Exception, *, where: str, api_key: str, timeout: float,
              max_retries: int) -> ModelError:
    """The :class:`ModelError` for an SDK's exception after its own retries.

    Raise it ``from None``: the SDK's exception (and the response body it holds) is not
    chained into tracebacks; what is kept is redacted here."""
    detail = summarize(redact_text(str(exc), api_key), 300)
    retries = f"after {max_retries + 1} attempts"
    if isinstance(exc, sdk.APIStatusError):
        code = exc.status_code
        retryable = code in (408, 409, 429) or code >= 500
        if exc.response.headers.get("x-should-retry") == "false":
            retryable = False  # the server said so, and the SDK obeyed
        tried = retries if retryable else "(not retryable)"
        return ModelError(f"{where}: HTTP {code} {tried}: {detail}", status_code=code,
                          retryable=retryable)
    if isinstance(exc, sdk.APITimeoutError):
        return ModelError(f"{where}: timed out after {timeout:g}s {retries}", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ModelError(f"{where}: could not connect {retries}: {detail}", retryable=True)
    return ModelError(f"{where}: {type(exc).__name__}: {detail}")


class PerLoop:
    """An SDK's async client per event loop: its connection pool belongs to the loop it
    was first used on, so a model used from several loops (``asyncio.run`` twice, a
    test suite) gets one client for each, and one loop's many agents share one."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            found = self._clients.get(loop)
            if found is None:
                found = self._clients[loop] = self._factory()
            return found


__all__ = ["PerLoop", "sdk_error"]
