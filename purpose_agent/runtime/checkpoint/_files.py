"""Durable file writes for the JSONL store: append a line, replace a file atomically,
fsync a directory. A failure is a StoreError that says why (a full disk, a size limit,
a read-only file system) and leaves no partial line or file behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from purpose_agent.errors import StoreError


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``: a write may be short (the disk filled up part way, or a
    size limit was reached); writing the rest then reports why it cannot go on."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # no error and no progress: nothing left to write into
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def why(exc: OSError) -> str:
    """``exc`` in words, with what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full (or over its quota): free space and retry ({exc})"
    if exc.errno == errno.EFBIG:
        return ("the file would exceed the largest size allowed (the process's file size "
                f"limit, ulimit -f, or the file system's): raise the limit and retry ({exc})")
    if exc.errno == errno.EROFS:
        return f"the file system is read-only ({exc})"
    return str(exc)


def append_line(fd: int, line: bytes, path: Path, *, start: int, new_dir: Path | None) -> None:
    """Append ``line`` after the last complete line (byte ``start``) and make it durable.

    Bytes after ``start`` are a torn write that never committed; they are cut off first
    rather than followed by a fresh line, because a record that lost only its newline
    would then read back as committed and duplicate the seqs given out since. If the
    line cannot be made durable it is cut off again, so the failed write is never read
    as committed. ``new_dir``: the directory to fsync when this created the journal.
    """
    try:
        if os.fstat(fd).st_size > start:
            os.ftruncate(fd, start)
        write_all(fd, line)
        # An fsync error is fatal for this write: the page cache may have dropped it.
        os.fsync(fd)
        if new_dir is not None:
            fsync_dir(new_dir)
    except (OSError, StoreError) as exc:
        reason = why(exc) if isinstance(exc, OSError) else str(exc)
        try:
            os.ftruncate(fd, start)
        except OSError as undo:
            raise StoreError(f"could not durably append to {str(path)!r}: {reason}; the "
                             f"unconfirmed line could not be removed either: {undo}") from exc
        raise StoreError(f"could not durably append to {str(path)!r}: {reason}; earlier "
                         "commits are intact") from exc


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            # All of it: a short write renamed into place would be a truncated snapshot.
            write_all(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write {str(path)!r}: {why(exc)}") from exc


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"could not fsync directory {str(path)!r}: {exc}") from exc


__all__ = ["append_line", "atomic_write", "fsync_dir", "why", "write_all"]
