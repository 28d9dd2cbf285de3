"""What the arguments of every store's methods mean, decided once (the base checks them
before a store sees them): ``limit``, ``since_seq``, ``kinds``, ``status``, a lease's
``ttl``, and which runs retention may delete."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from purpose_agent.runtime.events import EventKind, kind_values
from purpose_agent.runtime.journal import RunInfo, RunQuery
from purpose_agent.runtime.state import RunStatus

# Runs nobody advances unless asked again: what retention (prune_runs) may delete.
FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


def check_limit(limit: Any) -> int | None:
    """``limit`` as every store reads it: None is no limit, 0 or more is at most that
    many; anything else (a negative number, a float, a string, a bool) is a ValueError,
    so no store quietly reads ``-1`` as "all" or as "all but the last"."""
    if limit is None:
        return None
    try:
        value = operator.index(limit) if not isinstance(limit, bool) else -1
    except TypeError:
        value = -1
    if value < 0:
        raise ValueError(f"limit must be None (no limit) or a whole number >= 0, got {limit!r}")
    return value


def check_since(since_seq: Any) -> int:
    """``since_seq`` as every store reads it: events after it; below 0 means from the start."""
    try:
        return max(operator.index(since_seq), 0)
    except TypeError:
        raise ValueError(f"since_seq must be a whole number (a seq), got {since_seq!r}") from None


def check_kinds(kinds: Any) -> set[str] | None:
    """``kinds`` as every store reads it: None is every kind; one kind (an EventKind or its
    dotted name) or an iterable of them; an empty iterable matches no event."""
    if kinds is None:
        return None
    if isinstance(kinds, (str, EventKind)):
        kinds = [kinds]
    return {value for k in kinds for value in kind_values(k)}  # journals of older releases too


def check_status(status: Any) -> RunStatus | None:
    """``status`` as every store reads it: None is every run, else a RunStatus or its value."""
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        names = ", ".join(str(s) for s in RunStatus)
        raise ValueError(f"unknown run status {status!r}; use one of: {names}") from None


def check_name(value: Any, what: str) -> str | None:
    """A flow name or an id search: None (no filter) or a non-empty string without NUL."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{what} must be None (no filter) or a non-empty string without "
                         f"NUL, got {value!r}")
    return value


def check_after(after: Any) -> tuple[float, str] | None:
    """A listing's cursor: None (from the newest), the last :class:`RunInfo` of the
    previous page, or its key ``(updated_at, run_id)``."""
    if after is None:
        return None
    if isinstance(after, RunInfo):
        return RunQuery.key(after)
    if (isinstance(after, tuple) and len(after) == 2 and not isinstance(after[0], bool)
            and isinstance(after[0], (int, float)) and isinstance(after[1], str)
            and after[0] == after[0] and abs(after[0]) != float("inf")
            and after[1].isprintable() and _utf8(after[1])):
        return (float(after[0]), after[1])
    raise ValueError("after must be None, the last RunInfo of the previous page, or its "
                     f"(updated_at, run_id) key, got {after!r}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no run id holds one
        return False
    return True


def run_query(*, status: Any = None, flow: Any = None, search: Any = None,
              after: Any = None, limit: Any = None) -> RunQuery:
    """A run listing's arguments as every store reads them (each checked as above)."""
    return RunQuery(check_status(status), check_name(flow, "flow"),
                    check_name(search, "search"), check_after(after), check_limit(limit))


def check_ttl(ttl: Any) -> float:
    """A lease's time to live in seconds: a number from 0 (expired at once) up."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0 \
            or ttl == float("inf"):
        raise ValueError(f"a lease ttl is a finite number of seconds >= 0, got {ttl!r}")
    return float(ttl)


def check_batch(batch: Any) -> int:
    """A batch size: a whole number from 1 up."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, got {batch!r}")
    return batch


def check_finished(statuses: Iterable[RunStatus | str] | None) -> frozenset[RunStatus]:
    """The statuses retention deletes: :data:`FINISHED` when None, else those given, which
    must all be finished ones (a running, paused or pending run is never pruned)."""
    if statuses is None:
        return FINISHED
    wanted = set()
    for given in [statuses] if isinstance(statuses, str) else statuses:
        status = check_status(given)
        if status is None:
            raise ValueError("statuses holds None; name finished statuses, or pass None")
        wanted.add(status)
    unfinished = sorted(str(s) for s in wanted - FINISHED)
    if unfinished:
        raise ValueError(f"only finished runs (completed, failed, cancelled) are pruned, "
                         f"not {', '.join(unfinished)} ones")
    return frozenset(wanted)


__all__ = ["FINISHED", "check_after", "check_batch", "check_finished", "check_kinds",
           "check_limit", "check_name", "check_since", "check_status", "check_ttl",
           "run_query"]
