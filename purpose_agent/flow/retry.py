"""Retry policies for nodes and durable steps: how many attempts, how long between them.

The waits between attempts are durable timers: the attempt that failed and the time the
next one may start are journaled before the wait begins, so a crash during the wait
resumes the wait (at its journaled end), never the attempt count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from purpose_agent.errors import FlowDefinitionError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing node or step is retried.

    ``max_attempts`` counts the first call (1: no retry). Attempt *n* (n ≥ 1) failing is
    followed by a wait of ``initial × backoff^(n-1)`` seconds, at most ``max_interval``.
    An exception whose type is in ``non_retryable`` (or a subclass) is not retried. An
    exception with a numeric ``retry_after`` attribute (seconds, e.g. from an HTTP 429 or
    503 ``Retry-After`` header) waits that long instead of the computed wait.
    """

    max_attempts: int = 3
    initial: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) \
                or self.max_attempts < 1:
            raise FlowDefinitionError(f"RetryPolicy: max_attempts must be a whole number >= 1 "
                                      f"(the first call counts), got {self.max_attempts!r}")
        for name in ("initial", "backoff", "max_interval"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or math.isnan(value) or value < 0:
                raise FlowDefinitionError(f"RetryPolicy: {name} must be a number >= 0, got "
                                          f"{value!r}")
        if not isinstance(self.non_retryable, tuple) or not all(
                isinstance(t, type) and issubclass(t, BaseException) for t in self.non_retryable):
            raise FlowDefinitionError("RetryPolicy: non_retryable is a tuple of exception "
                                      f"classes, got {self.non_retryable!r}")

    @classmethod
    def of(cls, retries: int, backoff: float) -> RetryPolicy:
        """The policy of the older ``retries=`` / ``backoff=`` options: ``retries`` more
        attempts after ``backoff × 2^n`` seconds, with no upper bound."""
        return cls(max_attempts=retries + 1, initial=backoff, backoff=2.0,
                   max_interval=math.inf)

    def delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait after attempt ``attempt`` failed with ``exc``, or None when it
        is not retried (the last attempt, or a non-retryable exception)."""
        if attempt >= self.max_attempts or isinstance(exc, self.non_retryable):
            return None
        after = getattr(exc, "retry_after", None)
        if isinstance(after, (int, float)) and not isinstance(after, bool) \
                and math.isfinite(after) and after >= 0:
            return float(after)
        return float(min(self.initial * self.backoff ** (attempt - 1), self.max_interval))


__all__ = ["RetryPolicy"]
