"""The JSONL store's mailboxes: ``<run_id>.mailbox`` (JSON lines) beside the run's journal.

One line per event of the mailbox, appended and fsynced under the file's ``flock``:
``{"op": "send", "seq", "topic", "payload", "sent_at", "dedup_key"}`` when a message
arrives, ``{"op": "deliver", "seq", "to"}`` when a ``wait_for`` takes it. A torn last
line (a writer died mid-append) is a send or delivery that never happened: it is cut
off by the next append. Any other damage names the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from purpose_agent.errors import StoreCorrupted, StoreError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._files import append_line


class _Mailbox:
    """A mailbox as read under its lock: its messages and where its complete lines end."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []  # [seq, topic, payload JSON, sent_at, key, to]
        self.end = 0  # byte offset after the last complete line

    def parse(self, data: bytes, path: Path) -> None:
        lines = data.split(b"\n")
        for number, raw in enumerate(lines[:-1], start=1):  # lines[-1]: torn or empty
            try:
                rec = jsonutil.loads(raw.decode("ascii"))
                if rec["op"] == "send":
                    if rec["seq"] != len(self.rows) + 1:
                        raise ValueError(f"message seq {rec['seq']} does not follow "
                                         f"{len(self.rows)}")
                    self.rows.append([rec["seq"], rec["topic"], rec["payload"],
                                      float(rec["sent_at"]), rec.get("dedup_key"), None])
                elif rec["op"] == "deliver":
                    self.rows[rec["seq"] - 1][5] = rec["to"]
                else:
                    raise ValueError(f"unknown op {rec['op']!r}")
            except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
                raise StoreCorrupted(f"{path}, line {number}: the mailbox line is damaged "
                                     f"({exc}); the run's journal is intact") from None
            self.end += len(raw) + 1


class JSONLMailboxes:
    """Message primitives of :class:`~purpose_agent.runtime.checkpoint.jsonl.JSONLCheckpointer`."""

    dir: Path
    lock_timeout: float
    read_only: bool

    def _mailbox_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.mailbox"

    @contextmanager
    def _mailbox(self, run_id: str, write: bool) -> Iterator[tuple[int | None, _Mailbox]]:
        from purpose_agent.runtime.checkpoint.jsonl import _flock

        path = self._mailbox_path(run_id)
        if write and self.read_only:
            raise StoreError(f"JSONL store {str(self.dir)!r} was opened read_only=True; "
                             "open it without read_only to write")
        box = _Mailbox()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            yield None, box
            return
        except OSError as exc:
            raise StoreError(f"cannot open mailbox {str(path)!r}: {exc}") from exc
        try:
            _flock(fd, write, path, self.lock_timeout)
            data = b""
            while chunk := os.pread(fd, 1 << 20, len(data)):
                data += chunk
            box.parse(data, path)
            yield fd, box
        finally:
            os.close(fd)

    def _append_mail(self, fd: int, box: _Mailbox, path: Path, record: dict[str, Any]) -> None:
        line = (jsonutil.dumps(record) + "\n").encode("ascii")
        append_line(fd, line, path, start=box.end, new_dir=self.dir if box.end == 0 else None)
        box.end += len(line)

    def _send_message(self, run_id: str, topic: str, payload_json: str,
                      dedup_key: str | None, now: float) -> int | None:
        if not (self.dir / f"{run_id}.jsonl").exists():
            raise self._not_found(run_id)  # type: ignore[attr-defined]
        with self._mailbox(run_id, write=True) as (fd, box):
            assert fd is not None
            if dedup_key is not None and any(row[4] == dedup_key for row in box.rows):
                return None
            seq = len(box.rows) + 1
            self._append_mail(fd, box, self._mailbox_path(run_id), {
                "op": "send", "seq": seq, "topic": topic, "payload": payload_json,
                "sent_at": now, "dedup_key": dedup_key})
            return seq

    def _receive_message(self, run_id: str, topic: str, key: str) -> tuple[int, str] | None:
        if not self._mailbox_path(run_id).exists():
            return None
        with self._mailbox(run_id, write=True) as (fd, box):
            assert fd is not None
            found = next((r for r in box.rows if r[5] == key), None)
            if found is None:
                found = next((r for r in box.rows if r[1] == topic and r[5] is None), None)
                if found is None:
                    return None
                self._append_mail(fd, box, self._mailbox_path(run_id),
                             {"op": "deliver", "seq": found[0], "to": key})
            return found[0], found[2]

    def _message_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        with self._mailbox(run_id, write=False) as (_fd, box):
            return [tuple(row) for row in box.rows]


__all__ = ["JSONLMailboxes"]
