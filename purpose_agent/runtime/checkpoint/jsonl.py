"""JSONL store: a directory of plain, greppable files, one journal per run.

Layout of ``dir``::

    <run_id>.jsonl              the journal: one line per commit, appended and fsynced
    <run_id>.lease.json         the run's lease (owner, expiry, fencing token)
    <run_id>.snapshots/<v>.json full states, each written to a temp file, fsynced,
                                renamed atomically, the directory fsynced

A commit is one journal line, so it lands whole or not at all: a torn last line (power
cut mid-write) is skipped with a warning, earlier lines are never lost, and the next
append cuts the torn bytes off and starts on a fresh line. Writers of one run are
serialised with ``flock``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purpose_agent.errors import LeaseError, RunNotFound, StoreError, StoreNotFound
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import (
    BaseCheckpointer,
    PreparedCommit,
    kinds_filter,
    minimal_header,
    number_events,
    refuse_existing,
    validate_run_id,
)
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import CommitResult, Lease, RunInfo, StepRecord, check_lease_free


@dataclass
class _Tail:
    """What a writer needs to know of a journal, kept up to date incrementally."""

    offset: int = 0
    next_seq: int = 1
    version: int = 0
    header: dict[str, Any] | None = None


class JSONLCheckpointer(BaseCheckpointer):
    """A run store in a directory of JSONL journals (created if missing).

    ``read_only=True`` opens an existing directory for reading only: nothing is created
    (StoreNotFound if it is missing), every write is refused, and journals in a
    read-only directory or read-only files can still be read.

    ``lock_timeout``: how long an operation waits for a journal another process holds
    locked (a commit takes milliseconds) before it fails with a StoreError naming the
    file and the holder, instead of hanging behind a holder that is frozen (SIGSTOP, a
    VM pause) for good.
    """

    def __init__(self, directory: str | os.PathLike[str], *, read_only: bool = False,
                 lock_timeout: float = 30.0) -> None:
        self.lock_timeout = float(lock_timeout)
        self.dir = Path(directory)
        self.read_only = read_only
        if read_only:
            if not self.dir.exists():
                raise StoreNotFound(f"no store at {self.dir} (readers never create one; a "
                                    "command that runs a flow, such as `purpose-agent demo`, "
                                    "does)")
            if not self.dir.is_dir():
                raise StoreError(f"{self.dir} is not a purpose-agent JSONL store (not a "
                                 "directory)")
        else:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create JSONL store directory {str(self.dir)!r}: "
                                 f"{exc}") from exc
        self._tails: dict[str, _Tail] = {}

    # ── files ────────────────────────────────────────────────────────────────────
    def _journal(self, run_id: str) -> Path:
        return self.dir / f"{validate_run_id(run_id)}.jsonl"

    def _lease_path(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.lease.json"

    def _snap_dir(self, run_id: str) -> Path:
        return self.dir / f"{run_id}.snapshots"

    @contextmanager
    def _locked(self, run_id: str, exclusive: bool, create: bool) -> Iterator[int | None]:
        path = self._journal(run_id)
        if exclusive and self.read_only:
            raise StoreError(f"JSONL store {str(self.dir)!r} was opened read_only=True; "
                             "open it without read_only to write")
        # Readers open read-only, so a read-only file or directory can still be read.
        flags = (os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)) if exclusive \
            else os.O_RDONLY
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise StoreError(f"cannot open journal {str(path)!r}: {exc}") from exc
        try:
            _flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, path, self.lock_timeout)
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    def _lines(self, fd: int, start: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
        """Parse the complete journal lines from byte ``start``; yields (end offset, record).

        A last line without its newline is a torn write (power cut, or a writer killed
        mid-append): it never committed, so it is skipped with a warning.
        """
        size = os.fstat(fd).st_size
        data = os.pread(fd, size - start, start) if size > start else b""
        *complete, torn = data.split(b"\n")
        pos = start
        for raw in complete:
            end = pos + len(raw) + 1
            if raw.strip():
                try:
                    yield end, jsonutil.loads(raw)
                except ValueError:
                    warnings.warn(f"{self._name(fd)}: skipping an unreadable line at byte {pos}",
                                  RuntimeWarning, stacklevel=3)
            pos = end
        if torn.strip():
            warnings.warn(f"{self._name(fd)}: skipping a torn last line ({len(torn)} bytes) "
                          "of a write that never completed", RuntimeWarning, stacklevel=3)

    @staticmethod
    def _name(fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return f"journal (fd {fd})"

    def _tail(self, run_id: str, fd: int) -> _Tail:
        tail = self._tails.get(run_id)
        size = os.fstat(fd).st_size
        if tail is None or tail.offset > size:
            tail = _Tail()
        for end, rec in self._lines(fd, tail.offset):
            tail.offset = end
            if rec.get("events"):
                tail.next_seq = rec["events"][-1]["seq"] + 1
            if "version" in rec:
                tail.version = rec["version"]
                tail.header = rec["delta"]["header"]
        self._tails[run_id] = tail
        return tail

    def _exists(self, run_id: str, fd: int | None) -> bool:
        # A journal without one complete line holds no commit: only a refused first write
        # (or a torn one) created it, so the run does not exist.
        return fd is not None and self._tail(run_id, fd).offset > 0

    def _records(self, run_id: str) -> list[dict[str, Any]]:
        with self._locked(run_id, exclusive=False, create=False) as fd:
            return [rec for _end, rec in self._lines(fd)] if fd is not None else []

    # ── writes ───────────────────────────────────────────────────────────────────
    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        with self._locked(run_id, exclusive=True, create=True) as fd:
            assert fd is not None
            tail = self._tail(run_id, fd)
            if p.create and tail.offset > 0:
                raise refuse_existing(run_id)
            lease = self._read_lease(run_id)
            if p.fence is not None and p.fence != lease["fence"]:
                raise LeaseError(f"run {run_id!r} was taken over by another owner")
            events = number_events(run_id, p.events, tail.next_seq)
            if p.acquire is not None:
                now = time.time()
                check_lease_free(run_id, lease["owner"], lease["expires_at"], now,
                                 p.acquire[0])
            parts = [f'"events":[{",".join(e.to_json() for e in events)}]']
            if p.delta_json is not None:
                version = tail.version + 1
                parts.append(f'"version":{version},"step":{p.step},'
                             f'"node":{jsonutil.dumps(p.node)},"delta":{p.delta_json}')
                if p.snapshot_json is not None:
                    self._write_snapshot(run_id, version, p.snapshot_json)
                    parts.append('"snapshot":true')
            elif tail.header is None and tail.offset == 0:
                # A run known only through save_event still gets a header for listings.
                parts.append(f'"header":{jsonutil.dumps(minimal_header(run_id))}')
            if p.steps:
                parts.append(f'"steps":[{",".join(text for _rec, text in p.steps)}]')
            line = ("{" + ",".join(parts) + "}\n").encode("ascii")
            _append(fd, line, self._journal(run_id), start=tail.offset,
                    new_dir=self.dir if tail.offset == 0 else None)
            granted = None
            if p.acquire is not None:
                lease.update(owner=p.acquire[0], expires_at=now + p.acquire[1],
                             fence=lease["fence"] + 1)
                granted = Lease(run_id, p.acquire[0], lease["fence"], lease["expires_at"],
                                tail.next_seq + len(events))
            if p.release:
                lease.update(owner=None, expires_at=None)
            if p.acquire is not None or p.release:
                # Written after the journal line: a crash in between leaves a stale lease
                # of a dead process, which the next resumer on this host may take at once.
                self._write_lease(run_id, lease)
            self._tail(run_id, fd)
        return p.result(events, granted, bool(lease.get("cancel_requested")))

    def request_cancel(self, run_id: str) -> None:
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if not self._exists(run_id, fd):
                raise RunNotFound(f"no run {run_id!r} in {self.dir}")
            lease = self._read_lease(run_id)
            lease["cancel_requested"] = True
            self._write_lease(run_id, lease)

    def _write_snapshot(self, run_id: str, version: int, text: str) -> None:
        folder = self._snap_dir(run_id)
        folder.mkdir(exist_ok=True)
        _atomic_write(folder / f"{version:012d}.json", text)

    def _read_lease(self, run_id: str) -> dict[str, Any]:
        try:
            return jsonutil.loads(self._lease_path(run_id).read_text("ascii"))
        except FileNotFoundError:
            return {"owner": None, "expires_at": None, "fence": 0}

    def _write_lease(self, run_id: str, lease: dict[str, Any]) -> None:
        _atomic_write(self._lease_path(run_id), jsonutil.dumps(lease))

    def delete_run(self, run_id: str) -> bool:
        journal = self._journal(run_id)
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if fd is None:
                return False
            existed = self._exists(run_id, fd)
            shutil.rmtree(self._snap_dir(run_id), ignore_errors=True)
            self._lease_path(run_id).unlink(missing_ok=True)
            journal.unlink()
            self._tails.pop(run_id, None)
        _fsync_dir(self.dir)
        return existed

    # ── leases ───────────────────────────────────────────────────────────────────
    def acquire_lease(self, run_id: str, owner: str, ttl: float) -> Lease:
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if not self._exists(run_id, fd):
                raise RunNotFound(f"no run {run_id!r} in {self.dir}")
            lease = self._read_lease(run_id)
            now = time.time()
            check_lease_free(run_id, lease["owner"], lease["expires_at"], now, owner)
            lease.update(owner=owner, expires_at=now + ttl, fence=lease["fence"] + 1)
            self._write_lease(run_id, lease)
            return Lease(run_id, owner, lease["fence"], lease["expires_at"],
                         self._tail(run_id, fd).next_seq)

    def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        with self._locked(lease.run_id, exclusive=True, create=False) as fd:
            current = self._read_lease(lease.run_id) if fd is not None else {}
            if current.get("fence") != lease.fence or current.get("owner") != lease.owner:
                raise LeaseError(f"lease on run {lease.run_id!r} was lost to another owner")
            current["expires_at"] = time.time() + ttl
            self._write_lease(lease.run_id, current)
        return Lease(lease.run_id, lease.owner, lease.fence, current["expires_at"],
                     lease.next_seq)

    # ── reads ────────────────────────────────────────────────────────────────────
    def list_events(self, run_id: str, since_seq: int = 0, *, kinds: Any = None,
                    limit: int | None = None) -> list[PAEvent]:
        wanted = kinds_filter(kinds)
        out: list[PAEvent] = []
        for rec in self._records(run_id):
            for ev in rec.get("events", ()):
                if ev["seq"] > since_seq and (wanted is None or ev["kind"] in wanted):
                    out.append(PAEvent.from_dict(ev))
        return out[:limit] if limit is not None else out

    def next_seq(self, run_id: str) -> int:
        with self._locked(run_id, exclusive=False, create=False) as fd:
            return self._tail(run_id, fd).next_seq if fd is not None else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        with self._locked(run_id, exclusive=False, create=False) as fd:
            if not self._exists(run_id, fd):
                return None
            tail = self._tail(run_id, fd)
            header = tail.header or self._first_header(run_id)
        lease = self._read_lease(run_id)
        return RunInfo.from_header(header, owner=lease["owner"],
                                   lease_expires_at=lease["expires_at"],
                                   cancel_requested=bool(lease.get("cancel_requested")))

    def _first_header(self, run_id: str) -> dict[str, Any]:
        for rec in self._records(run_id):
            if "header" in rec:
                return rec["header"]
        return minimal_header(run_id)

    def _all_infos(self) -> Iterable[RunInfo]:
        for path in self.dir.glob("*.jsonl"):
            info = self.run_info(path.name[: -len(".jsonl")])
            if info is not None:
                yield info

    def load_steps(self, run_id: str, step: int) -> list[StepRecord]:
        latest: dict[str, StepRecord] = {}
        for rec in self._records(run_id):
            for item in rec.get("steps", ()):
                if item["step"] == step:
                    latest[item["key"]] = StepRecord.from_dict(item)
        return sorted(latest.values(), key=lambda r: r.index)

    def _commits(self, run_id: str) -> list[dict[str, Any]]:
        return [rec for rec in self._records(run_id) if "version" in rec]

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        for rec in reversed(self._commits(run_id)):
            if rec.get("snapshot") and (max_version is None or rec["version"] <= max_version):
                path = self._snap_dir(run_id) / f"{rec['version']:012d}.json"
                return rec["version"], path.read_text("ascii")
        return None

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        return [(rec["version"], jsonutil.dumps(rec["delta"])) for rec in self._commits(run_id)
                if rec["version"] > after and (upto is None or rec["version"] <= upto)]

    def _node_version(self, run_id: str, step: int) -> int | None:
        for rec in self._commits(run_id):
            if rec["step"] == step and (rec["node"] is not None or step == 0):
                return rec["version"]
        return None

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        return self._deltas(run_id, 0, None)

    def __repr__(self) -> str:
        return f"JSONLCheckpointer({str(self.dir)!r})"


def _append(fd: int, line: bytes, path: Path, *, start: int, new_dir: Path | None) -> None:
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
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write ({written} of {len(line)} bytes)")
        # An fsync error is fatal for this write: the page cache may have dropped it.
        os.fsync(fd)
        if new_dir is not None:
            _fsync_dir(new_dir)
    except (OSError, StoreError) as exc:
        try:
            os.ftruncate(fd, start)
        except OSError as undo:
            raise StoreError(f"could not durably append to {str(path)!r}: {exc}; the "
                             f"unconfirmed line could not be removed either: {undo}") from exc
        raise StoreError(f"could not durably append to {str(path)!r}: {exc}") from exc


def _flock(fd: int, mode: int, path: Path, timeout: float) -> None:
    """``flock`` that gives up after ``timeout`` seconds. (flock itself has no timeout, and
    a blocking one cannot be interrupted without a signal; uncontended, this is one call.)"""
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
        delay = min(delay * 2, 0.01)
    holder = _lock_holder(fd)
    raise StoreError(
        f"journal {str(path)!r} stayed locked for {timeout:g}s by "
        f"{f'process {holder}' if holder else 'another process'}; if that process is "
        "frozen or hung, resume or end it (or raise JSONLCheckpointer(lock_timeout=...))"
    )


def _lock_holder(fd: int) -> int | None:
    """The pid holding a flock on ``fd``'s file, from /proc/locks (Linux), if known."""
    st = os.fstat(fd)
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as f:
            for line in f:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->".
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
                    return int(fields[4])
    except (OSError, ValueError):
        pass
    return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"could not write {str(path)!r}: {exc}") from exc


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"could not fsync directory {str(path)!r}: {exc}") from exc
