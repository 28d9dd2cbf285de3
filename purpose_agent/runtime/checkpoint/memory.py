"""In-memory store: for tests and throwaway runs. Holds JSON copies, never references."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.checkpoint._integrity import decode_all
from purpose_agent.runtime.checkpoint._prepare import (
    Held,
    PreparedCommit,
    minimal_header,
    number_events,
    refuse_existing,
    validate_run_id,
)
from purpose_agent.runtime.journal import CommitResult, RunInfo, RunQuery


@dataclass
class _Run:
    header: str
    next_seq: int = 1
    version: int = 0
    owner: str | None = None
    lease_expires_at: float | None = None
    fence: int = 0
    cancel_requested: bool = False
    events: list[tuple[int, str, str]] = field(default_factory=list)  # seq, kind, json
    deltas: list[tuple[int, int, str | None, str]] = field(default_factory=list)
    snapshots: list[tuple[int, str]] = field(default_factory=list)
    steps: list[tuple[int, str]] = field(default_factory=list)  # node execution, json
    # (seq, topic, payload JSON, sent_at, dedup_key, delivered_to): the run's mailbox
    messages: list[list[Any]] = field(default_factory=list)


class InMemoryCheckpointer(BaseCheckpointer):
    """A store that lives as long as the object. Values are stored as strict JSON text,
    so what you read back is always a copy and mutating it cannot change the store."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.RLock()

    async def _awrite(self, run_id: str, p: PreparedCommit) -> CommitResult:
        return self._write(run_id, p)  # no I/O: nothing to take off the event loop

    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and p.create:
                raise refuse_existing(run_id)
            if run is None and p.must_exist:
                raise self._not_found(run_id)
            new = run is None
            if run is None:
                run = _Run(header=p.header_json or jsonutil.dumps(minimal_header(run_id)))
            held = p.lease_after(run_id, Held(run.owner, run.lease_expires_at, run.fence),
                                 time.time())
            events = number_events(run_id, p.events, run.next_seq)
            # Everything is checked and encoded above; from here on nothing can fail,
            # so the commit is all-or-nothing.
            run.owner, run.lease_expires_at, run.fence = held
            run.events.extend((e.seq, str(e.kind), e.to_json()) for e in events)
            if events:
                run.next_seq = events[-1].seq + 1
            if p.delta_json is not None:
                run.version += 1
                run.deltas.append((run.version, p.step, p.node, p.delta_json))
                if p.snapshot_json is not None:
                    run.snapshots.append((run.version, p.snapshot_json))
            for rec, text in p.steps:
                run.steps.append((rec.step, text))
            if p.header_json is not None:
                run.header = p.header_json
            if new:
                self._runs[run_id] = run
            return p.result(run_id, events, held, run.next_seq, run.cancel_requested)

    def _request_cancel(self, run_id: str) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                run.cancel_requested = True
            return run is not None

    def _send_message(self, run_id: str, topic: str, payload_json: str,
                      dedup_key: str | None, now: float) -> int | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise self._not_found(run_id)
            if dedup_key is not None and any(m[4] == dedup_key for m in run.messages):
                return None
            seq = len(run.messages) + 1
            run.messages.append([seq, topic, payload_json, now, dedup_key, None])
            return seq

    def _receive_message(self, run_id: str, topic: str, key: str) -> tuple[int, str] | None:
        with self._lock:
            run = self._runs.get(run_id)
            mailbox = run.messages if run is not None else []
            found = next((m for m in mailbox if m[5] == key), None) or next(
                (m for m in mailbox if m[1] == topic and m[5] is None), None)
            if found is None:
                return None
            found[5] = key
            return found[0], found[2]

    def _message_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        with self._lock:
            run = self._runs.get(run_id)
            return [tuple(m) for m in run.messages] if run is not None else []

    def _get(self, run_id: str) -> _Run | None:
        return self._runs.get(validate_run_id(run_id))

    def delete_run(self, run_id: str) -> bool:
        with self._lock:
            return self._runs.pop(validate_run_id(run_id), None) is not None

    def _renew_lease(self, run_id: str, owner: str, fence: int, ttl: float) -> float | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.fence != fence or run.owner != owner:
                return None
            run.lease_expires_at = time.time() + ttl
            return run.lease_expires_at

    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        with self._lock:
            run = self._runs.get(run_id)
            texts = [text for seq, _kind, text in run.events if seq > since] if run else []
        yield decode_all(texts, lambda i: self._where(run_id, "seq", since + 1 + i))

    def next_seq(self, run_id: str) -> int:
        run = self._get(run_id)
        return run.next_seq if run else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        run = self._get(run_id)
        return _info(run) if run else None

    def _run_infos(self, query: RunQuery) -> list[RunInfo]:
        with self._lock:
            return [_info(run) for run in self._runs.values()]

    def _step_records(self, run_id: str, step: int) -> list[tuple[Any, Callable[[], str]]]:
        with self._lock:
            run = self._runs.get(run_id)
            texts = [text for _step, text in run.steps] if run else []
        where = partial(self._where, run_id, "steps", step)
        return [(data, where) for data in decode_all(texts, lambda _i: where())]

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        with self._lock:
            run = self._runs.get(run_id)
            for version, text in reversed(run.snapshots if run else []):
                if max_version is None or version <= max_version:
                    return version, text
        return None

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        with self._lock:
            run = self._runs.get(run_id)
            return [(v, text) for v, _s, _n, text in (run.deltas if run else [])
                    if v > after and (upto is None or v <= upto)]

    def _commits_at(self, run_id: str, step: int) -> list[tuple[int, str | None]]:
        with self._lock:
            run = self._runs.get(run_id)
            return [(v, node) for v, s, node, _text in (run.deltas if run else []) if s == step]

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        return self._deltas(run_id, 0, None)

    def __repr__(self) -> str:
        return f"InMemoryCheckpointer({len(self._runs)} runs)"


def _info(run: _Run) -> RunInfo:
    return RunInfo.from_header(jsonutil.loads(run.header), owner=run.owner,
                               lease_expires_at=run.lease_expires_at,
                               cancel_requested=run.cancel_requested)
