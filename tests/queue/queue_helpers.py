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


def effect_lines(path: Path) -> list[tuple[str, str, str, int]]:
    """Every effect that happened: (run, node, step, pid), in order."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        run, node, step, pid = line.split()
        out.append((run, node, step, int(pid)))
    return out


def effects(path: Path) -> Counter[str]:
    """How many times each effect (``run node step``) happened, whichever process."""
    return Counter(f"{run} {node} {step}" for run, node, step, _pid in effect_lines(path))
