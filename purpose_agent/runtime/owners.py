"""Who may advance a run: lease owners, and whether an owner is still alive.

A lease owner is a *driver* — one ``flow.run`` / ``resume`` / ``cancel`` call — not a
process: ``host:pid/token``, the token fresh for every driver. Two threads or asyncio
tasks of one process are two owners, so the second one is refused like any other
(DESIGN rule 3). An owner written by an earlier release, ``host:pid``, still parses: it
stands for its whole process.

Whether an owner is alive:

- on another host: unknown, so alive until its lease expires;
- in another process on this host: alive while that process runs (any token);
- in this process: alive while its driver is registered here (:func:`driver`), so a
  driver that ended without releasing its lease (it raised) is taken over at once.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, NamedTuple

from purpose_agent.errors import RunBusyError

_HOST = socket.gethostname()
_live: set[str] = set()  # tokens of this process's drivers that have not ended
_live_lock = threading.Lock()


class Owner(NamedTuple):
    """A parsed owner name. ``token`` is None for a whole-process owner (``host:pid``)."""

    host: str
    pid: int | None
    token: str | None


def parse_owner(owner: str) -> Owner:
    """Split ``host:pid/token`` (or the earlier ``host:pid``); an unknown shape keeps
    ``pid`` None, and is then never judged dead."""
    host, _, rest = owner.rpartition(":")
    pid, _, token = rest.partition("/")
    return Owner(host, int(pid) if pid.isdigit() else None, token or None)


def owner_id() -> str:
    """This process as a whole-process owner, ``host:pid`` (what a store shows for a
    process; a driver owns a lease under :func:`driver` instead)."""
    return f"{_HOST}:{os.getpid()}"


@contextmanager
def driver() -> Iterator[str]:
    """A fresh owner name for one driver, alive in this process until the block ends."""
    token = os.urandom(6).hex()
    with _live_lock:
        _live.add(token)
    try:
        yield f"{_HOST}:{os.getpid()}/{token}"
    finally:
        with _live_lock:
            _live.discard(token)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child nobody has reaped yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is known to be gone: a process on this host that no longer
    runs (whatever its token), or a driver of this process that has ended."""
    host, pid, token = parse_owner(owner)
    if host != _HOST or pid is None:
        return False
    if pid != os.getpid():
        return not _pid_alive(pid)
    # This process: a whole-process owner is alive as long as we are.
    return token is not None and token not in _live


LeaseStatus = Literal["free", "expired", "gone", "live"]


def lease_status(owner: str | None, expires_at: float | None, now: float) -> LeaseStatus:
    """Whether a run's lease is live at ``now``: the one answer to that question, for the
    stores (who may take a run), the listing (is a running run stalled) and ``show``.

    ``free``: no owner, or no expiry (a store grants every lease one and clears both on
    release); ``expired``: its expiry is ``now`` or earlier; ``gone``: its owner is known
    to have ended (:func:`owner_is_dead`); else ``live``. Only a live lease keeps others
    from taking the run.
    """
    if not owner or expires_at is None:
        return "free"
    if expires_at <= now:
        return "expired"
    if owner_is_dead(owner):
        return "gone"
    return "live"


def check_lease_free(run_id: str, owner: str | None, expires_at: float | None,
                     now: float, me: str) -> None:
    """Raise :class:`RunBusyError` unless ``me`` may take the run's lease at ``now``: the
    lease is not live (:func:`lease_status`), or ``me`` holds it already."""
    if owner == me or lease_status(owner, expires_at, now) != "live":
        return
    assert owner is not None and expires_at is not None
    where = "another driver in this process" if parse_owner(owner)[:2] == parse_owner(me)[:2] \
        else owner
    raise RunBusyError(
        f"run {run_id!r} is being advanced by {where} ({owner}, lease valid for another "
        f"{expires_at - now:.0f}s); wait for it to finish or pause, or for the lease to "
        "expire if that process is gone"
    )


def _after_fork() -> None:
    # The parent's drivers did not come along: their owners name the parent's pid, and
    # are judged by whether the parent runs.
    global _live_lock
    _live.clear()
    _live_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)

__all__ = ["LeaseStatus", "Owner", "check_lease_free", "driver", "lease_status", "owner_id",
           "owner_is_dead", "parse_owner"]
