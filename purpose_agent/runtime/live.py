"""Live output of a running node (a model's answer as it streams): shown while it
happens, never journaled.

A run's journal holds what happened for good; a streamed answer is only whole when its
model call ends, and then the journal gets it. Until then its pieces go to the run's
live readers (``flow.stream``, ``flow.astream``, ``purpose-agent events --follow``):

- always to a per-run file on this host, ``$PURPOSE_AGENT_LIVE_DIR`` (default: a
  ``purpose-agent-live`` directory in the system's temporary directory), appended
  without fsync, read from its start by readers on this host;
- and, on a store that has a channel of its own (PostgreSQL: ``NOTIFY`` on a channel of
  the run, see ``checkpoint/_postgres_live.py``), through it, to readers on any host
  connected to the same database, from the moment they listen. Each item carries an
  ``id``, so a reader that gets it both ways shows it once.

Either way it is best effort: pieces may be lost in a crash, a re-sent request's pieces
come twice, and nothing ever reads them back into a run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

LIVE_DIR_ENV = "PURPOSE_AGENT_LIVE_DIR"


def live_path(store: Any, run_id: str) -> Path:
    """The live file of ``run_id`` in ``store`` (on this host)."""
    root = Path(os.environ.get(LIVE_DIR_ENV) or
                Path(tempfile.gettempdir()) / f"purpose-agent-live-{os.getuid()}")
    return root / _store_key(store) / f"{hashlib.sha256(run_id.encode()).hexdigest()[:24]}.jsonl"


def _store_key(store: Any) -> str:
    """One name per store, whichever process opened it and however its path was spelt."""
    path = getattr(store, "path", None) or getattr(store, "dir", None)
    if path is not None:
        where = str(Path(path).resolve())
    elif getattr(store, "url", None) is not None:
        where = f"{store.url}#{getattr(store, 'schema', '')}"
    else:  # an in-memory store: this process only
        where = f"{type(store).__name__}@{os.getpid()}:{id(store)}"
    return hashlib.sha256(where.encode()).hexdigest()[:24]


def write_live(path: Path, item: dict[str, Any]) -> None:
    """Append one item (JSON) to a live file; a failure to write is not the run's."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a", encoding="utf-8") as f:
            # ASCII JSON: a lone surrogate (LLMs emit them) is escaped, not an error.
            f.write(json.dumps(item) + "\n")
    except OSError:
        pass  # live output is a convenience: the journal is the record


def read_live(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """The whole lines of a live file after byte ``offset``, and the offset after them."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    items = []
    for line in data[:end].splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(item, dict):
            items.append(item)
    return items, offset + end


class LiveReader(Protocol):
    """A run's live items as they come: each :meth:`read` gives the new ones."""

    def read(self) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def publish_live(store: Any, run_id: str, item: dict[str, Any]) -> None:
    """Hand ``item`` to the run's live readers: in this host's live file, and through
    the store's channel if it has one. Never raises for a failure to deliver."""
    item = {"id": f"{_PROCESS}-{next(_COUNTER)}", **item}
    write_live(live_path(store, run_id), item)
    publish = getattr(store, "publish_live", None)
    if publish is not None:
        publish(run_id, item)


_PROCESS = uuid.uuid4().hex[:12]  # ids unique across processes and hosts
_COUNTER = itertools.count(1)


def live_reader(store: Any, run_id: str) -> LiveReader:
    """A reader of the run's live items: this host's live file from its start, and the
    store's channel (if it has one) from now on, each item once. Close it when done."""
    reader: LiveReader = _FileReader(live_path(store, run_id))
    listen = getattr(store, "listen_live", None)
    listener: LiveReader | None = listen(run_id) if listen is not None else None
    return _Merged(reader, listener) if listener is not None else reader


class _FileReader:
    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        items, self.offset = read_live(self.path, self.offset)
        return items

    def close(self) -> None:
        pass


class _Merged:
    """This host's file and the store's channel, each item once: an item is shown from
    whichever gave it first (the file, for an item written on this host, unless a read
    fell between its write and its notification; the channel only, for one from another
    host). The channel may give an item in several pieces (a long text split), which
    are all shown."""

    def __init__(self, file: LiveReader, channel: LiveReader) -> None:
        self.file, self.channel = file, channel
        self.from_file: set[Any] = set()
        self.from_channel: set[Any] = set()

    def read(self) -> list[dict[str, Any]]:
        out = [item for item in self.file.read()
               if self._first(item, self.from_file, self.from_channel)]
        out += [item for item in self.channel.read()
                if self._first(item, self.from_channel, self.from_file)]
        return out

    @staticmethod
    def _first(item: dict[str, Any], mine: set[Any], other: set[Any]) -> bool:
        key = item.get("id")
        mine.add(key)
        return key is None or key not in other

    def close(self) -> None:
        self.channel.close()


__all__ = ["LIVE_DIR_ENV", "LiveReader", "live_path", "live_reader", "publish_live",
           "read_live", "write_live"]
