"""Following a run as it happens: its committed events, and the live output of its
nodes (a model's answer as it streams; see :mod:`purpose_agent.runtime.live`), until it
stops running."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.live import live_reader
from purpose_agent.runtime.state import RunStatus

_NOT_YET = (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class LiveItem:
    """Live output of a node, not journaled: for a streamed model answer ``kind`` is
    ``"model.token"`` and ``payload`` holds ``text``, ``agent`` and ``turn``."""

    kind: str
    node: str | None
    payload: dict[str, Any]


def follow(cp: BaseCheckpointer, run_id: str, *, since: int = 0, poll: float = 0.1,
           stop: threading.Event | None = None) -> Iterator[PAEvent | LiveItem]:
    """The run's events after seq ``since`` as they are committed, with its live items
    (from their start) between them, until the run has stopped: completed, paused,
    failed or cancelled (or ``stop`` is set). A run not started yet (no run by that id,
    queued, pending) is waited for."""
    reader = _Reader(cp, run_id, since)
    stop = stop or threading.Event()
    try:
        while True:
            items, stopped = reader.read()
            yield from items
            if stopped:
                return
            if stop.wait(poll):  # re-checks the store: polling, not synchronisation by time
                return
    finally:
        reader.live.close()


async def afollow(cp: BaseCheckpointer, run_id: str, *, since: int = 0, poll: float = 0.1,
                  stop: asyncio.Event | None = None) -> AsyncIterator[PAEvent | LiveItem]:
    """:func:`follow` for an event loop: each read of the store and the live output runs
    in a thread and the wait between reads is awaited, so the loop is never blocked
    (a run streaming in the same loop goes on while this follows it)."""
    reader = await asyncio.to_thread(_Reader, cp, run_id, since)
    stop = stop or asyncio.Event()
    try:
        while True:
            items, stopped = await asyncio.to_thread(reader.read)
            for item in items:
                yield item
            if stopped:
                return
            try:  # re-checks the store: polling, not synchronisation by time
                await asyncio.wait_for(stop.wait(), poll)
                return
            except TimeoutError:
                pass
    finally:
        reader.live.close()


class _Reader:
    """Where a follower is: the last seq it gave, and its reader of the live output."""

    def __init__(self, cp: BaseCheckpointer, run_id: str, since: int) -> None:
        self.cp, self.run_id, self.seq = cp, run_id, since
        self.live = live_reader(cp, run_id)

    def read(self) -> tuple[list[PAEvent | LiveItem], bool]:
        """What is new (live items first, then committed events), and whether the run
        had stopped before it was read (so nothing it did is left unread)."""
        info = self.cp.run_info(self.run_id)  # read before draining: nothing is missed
        out: list[PAEvent | LiveItem] = []
        for line in self.live.read():
            line.pop("id", None)  # the reader's business (each item shown once)
            node = line.pop("node", None)
            out.append(LiveItem(str(line.pop("kind", "live")), node, line))
        for event in self.cp.list_events(self.run_id, since_seq=self.seq):
            self.seq = event.seq
            out.append(event)
        return out, info is not None and info.status not in _NOT_YET


__all__ = ["LiveItem", "afollow", "follow"]
