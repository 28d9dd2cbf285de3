"""Waiting on conditions with deadlines (never sleeping as synchronisation), and effects."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float, what: str,
             every: float = 0.02) -> T:
    """``condition()`` once it is truthy; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        tick.wait(every)  # re-checks a condition: polling, not synchronisation by time


def effects(path: Path) -> Counter[str]:
    """How many times each effect line (``run node step``) happened."""
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().splitlines() if line)
