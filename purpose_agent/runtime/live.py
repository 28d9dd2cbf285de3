"""Live output of a running node (a model's answer as it streams): shown while it
happens, never journaled.

A run's journal holds what happened for good; a streamed answer is only whole when its
model call ends, and then the journal gets it. Until then its pieces go to a per-run
file on this host, ``$PURPOSE_AGENT_LIVE_DIR`` (default: a ``purpose-agent-live``
directory in the system's temporary directory), appended without fsync: readers on this
host (``flow.stream``, ``purpose-agent events --follow``) show them as they come. The
file is best effort: it may lose its last lines in a crash, and holds a re-sent
request's pieces twice; nothing ever reads it back into a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
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


__all__ = ["LIVE_DIR_ENV", "live_path", "read_live", "write_live"]
