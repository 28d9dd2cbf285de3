"""Following a run as it happens: its committed events, and the live output of its
nodes on this host (a model's answer as it streams), until it stops running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.live import live_path, read_live
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
    seq, offset = since, 0
    path = live_path(cp, run_id)
    stop = stop or threading.Event()
    while True:
        info = cp.run_info(run_id)  # read before draining: nothing committed before is missed
        items, offset = read_live(path, offset)
        for item in items:
            node = item.pop("node", None)
            yield LiveItem(str(item.pop("kind", "live")), node, item)
        for event in cp.list_events(run_id, since_seq=seq):
            seq = event.seq
            yield event
        if info is not None and info.status not in _NOT_YET:
            return
        if stop.wait(poll):  # re-checks the store: polling, not synchronisation by time
            return


__all__ = ["LiveItem", "follow"]
