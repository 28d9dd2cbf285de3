"""JSONL store: a directory of plain, greppable files, one journal per run.

Layout of ``dir``::

    <run_id>.jsonl              the journal: one line per commit, appended and fsynced
    <run_id>.lease.json         the run's lease (owner, expiry, fencing token)
    <run_id>.mailbox            the run's mailbox, JSON lines (see _jsonl_messages.py)
    <run_id>.snapshots/<v>.json full states, each written to a temp file, fsynced,
                                renamed atomically, the directory fsynced

A commit is one journal line, so it lands whole or not at all: a torn last line (power
cut mid-write) is skipped with a warning, earlier lines are never lost, and the next
append cuts the torn bytes off and starts on a fresh line. Any other line that is not a
record this store wrote, or whose seqs or version do not follow the line before, is
damage: reads and writes of the run raise StoreCorrupted naming the file and line, and
nothing is appended after it. Writers of one run are serialised with ``flock``.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from purpose_agent.errors import (
    StoreCorrupted,
    StoreError,
    StoreNotFound,
)
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.checkpoint._files import append_line, atomic_write, fsync_dir
from purpose_agent.runtime.checkpoint._integrity import (
    checked_header,
    corrupted,
    seq_gap,
    version_gap,
)
from purpose_agent.runtime.checkpoint._jsonl_messages import JSONLMailboxes
from purpose_agent.runtime.checkpoint._prepare import (
    Held,
    PreparedCommit,
    minimal_header,
    number_events,
    refuse_existing,
    validate_run_id,
)
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import CommitResult, RunInfo, RunQuery


@dataclass
class _Tail:
    """What a writer needs to know of a journal, kept up to date incrementally."""

    offset: int = 0
    line: int = 0  # the number of the line ending at ``offset``
    next_seq: int = 1
    version: int = 0
    header: dict[str, Any] | None = None


class JSONLCheckpointer(JSONLMailboxes, BaseCheckpointer):
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
            _flock(fd, exclusive, path, self.lock_timeout)
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    def _lines(self, fd: int, path: Path, start: int = 0,
               line: int = 0) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """Parse the complete journal lines of ``fd`` (open on ``path``) from byte
        ``start``, which ends line number ``line``; yields (end offset, line number,
        record).

        A last line without its newline is a torn write (power cut, or a writer killed
        mid-append): it never committed, so it is skipped with a warning. Any other line
        that is not a journal record is damage, and raises StoreCorrupted naming the file
        and line: skipping it would silently drop a commit.
        """
        size = os.fstat(fd).st_size
        data = os.pread(fd, size - start, start) if size > start else b""
        *complete, torn = data.split(b"\n")
        pos = start
        for raw in complete:
            line += 1
            try:
                rec = jsonutil.loads(raw)
            except ValueError as exc:
                raise corrupted(f"{path}, line {line}",
                                f"the line is not JSON ({exc})") from None
            problem = _record_problem(rec)
            if problem is not None:
                raise corrupted(f"{path}, line {line}", problem)
            pos += len(raw) + 1
            yield pos, line, rec
        if torn.strip():
            warnings.warn(f"{path}: skipping a torn last line ({len(torn)} bytes) "
                          "of a write that never completed", RuntimeWarning, stacklevel=3)

    def _tail(self, run_id: str, fd: int) -> _Tail:
        """The journal's tail, read on from where this store last read it."""
        tail = self._tails.get(run_id)
        if tail is None or tail.offset > os.fstat(fd).st_size:
            tail = _Tail()
        tail = self._tails[run_id] = self._follow(fd, self._journal(run_id), tail, None)
        return tail

    def _follow(self, fd: int, path: Path, tail: _Tail,
                records: list[dict[str, Any]] | None) -> _Tail:
        """``tail`` advanced over the lines after it (appended to ``records`` if given).

        Each line's seqs must follow the line before, and its version too, so that no
        reader or writer goes on past a gap (StoreCorrupted naming the line); a damaged
        line leaves ``tail`` as it was."""
        offset, line, next_seq = tail.offset, tail.line, tail.next_seq
        version, header = tail.version, tail.header
        for end, line, rec in self._lines(fd, path, tail.offset, tail.line):
            for event in rec["events"]:
                seq = event.get("seq") if type(event) is dict else event
                if seq != next_seq:
                    raise corrupted(f"{path}, line {line}", seq_gap(next_seq, seq))
                next_seq += 1
            if "version" in rec:
                if rec["version"] != version + 1:
                    raise corrupted(f"{path}, line {line}",
                                    version_gap(version + 1, rec["version"]))
                version, header = rec["version"], rec["delta"]["header"]
            offset = end
            if records is not None:
                records.append(rec)
        return _Tail(offset, line, next_seq, version, header)

    def _exists(self, run_id: str, fd: int) -> bool:
        # A journal without one complete line holds no commit: only a refused first write
        # (or a torn one) created it, so the run does not exist.
        return self._tail(run_id, fd).offset > 0

    def _records(self, run_id: str) -> list[dict[str, Any]]:
        """Every record of the run's journal, checked line by line as a writer does."""
        records: list[dict[str, Any]] = []
        with self._locked(run_id, exclusive=False, create=False) as fd:
            if fd is not None:
                self._tails[run_id] = self._follow(fd, self._journal(run_id), _Tail(),
                                                   records)
        return records

    def _where(self, run_id: str, what: str, key: Any) -> str:
        if what == "snapshot":
            return str(self._snap_dir(run_id) / f"{key:012d}.json")
        path = self._journal(run_id)
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError:
            return str(path)
        for number, raw in enumerate(lines, start=1):
            try:
                rec = jsonutil.loads(raw)
                if ((what == "seq" and any(e.get("seq") == key for e in rec["events"]))
                        or (what == "version" and rec.get("version") == key)
                        or (what == "steps" and any(item.get("step") == key
                                                    for item in rec.get("steps", ())))):
                    return f"{path}, line {number}"
            except (ValueError, TypeError, KeyError, AttributeError):
                continue
        return str(path)

    # ── writes ───────────────────────────────────────────────────────────────────
    def _write(self, run_id: str, p: PreparedCommit) -> CommitResult:
        with self._locked(run_id, exclusive=True, create=not p.must_exist) as fd:
            if fd is None and not p.must_exist:  # O_CREAT found no directory
                raise StoreError(f"JSONL store directory {str(self.dir)!r} is gone; "
                                 "recreate it or point the store elsewhere")
            if fd is None or (p.must_exist and not self._exists(run_id, fd)):
                raise self._not_found(run_id)
            tail = self._tail(run_id, fd)
            if p.create and tail.offset > 0:
                raise refuse_existing(run_id)
            lease = self._read_lease(run_id)
            held = p.lease_after(run_id, Held(lease["owner"], lease["expires_at"],
                                              lease["fence"]), time.time())
            events = number_events(run_id, p.events, tail.next_seq)
            if events or p.delta_json is not None or p.steps or tail.offset == 0:
                self._append(run_id, fd, tail, events, p)
            if held != (lease["owner"], lease["expires_at"], lease["fence"]):
                # Written after the journal line: a crash in between leaves a stale lease
                # of a dead process, which the next resumer on this host may take at once.
                lease.update(owner=held.owner, expires_at=held.expires_at, fence=held.fence)
                self._write_lease(run_id, lease)
            self._tail(run_id, fd)
        return p.result(run_id, events, held, tail.next_seq + len(events),
                        bool(lease.get("cancel_requested")))

    def _append(self, run_id: str, fd: int, tail: _Tail, events: list[PAEvent],
                p: PreparedCommit) -> None:
        """The commit's journal line, after the journal's last complete line."""
        parts = [f'"events":[{",".join(p.event_texts(events))}]']
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
        append_line(fd, line, self._journal(run_id), start=tail.offset,
                    new_dir=self.dir if tail.offset == 0 else None)

    def _request_cancel(self, run_id: str) -> bool:
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if fd is None or not self._exists(run_id, fd):
                return False
            lease = self._read_lease(run_id)
            lease["cancel_requested"] = True
            self._write_lease(run_id, lease)
        return True

    def _write_snapshot(self, run_id: str, version: int, text: str) -> None:
        folder = self._snap_dir(run_id)
        folder.mkdir(exist_ok=True)
        atomic_write(folder / f"{version:012d}.json", text)

    def _read_lease(self, run_id: str) -> dict[str, Any]:
        path = self._lease_path(run_id)
        lease: dict[str, Any] = {"owner": None, "expires_at": None, "fence": 0}
        try:
            found = jsonutil.loads(path.read_text("ascii"))
        except FileNotFoundError:
            return lease
        except OSError as exc:
            raise StoreError(f"cannot read the lease file {str(path)!r}: {exc}") from exc
        except ValueError as exc:
            problem: str | None = f"it is not JSON ({exc})"
        else:
            problem = _lease_problem(found)
        if problem is not None:
            raise StoreCorrupted(
                f"{path}: the lease file of run {run_id!r} is damaged: {problem}. The run's "
                "journal is intact; once no process is advancing the run, delete this file "
                "and retry")
        lease.update(found)
        return lease

    def _write_lease(self, run_id: str, lease: dict[str, Any]) -> None:
        atomic_write(self._lease_path(run_id), jsonutil.dumps(lease))

    def delete_run(self, run_id: str) -> bool:
        journal = self._journal(run_id)
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if fd is None:
                return False
            try:
                existed = self._exists(run_id, fd)
            except StoreCorrupted:  # deleting a damaged run is one way out of the damage
                existed = True
            shutil.rmtree(self._snap_dir(run_id), ignore_errors=True)
            self._lease_path(run_id).unlink(missing_ok=True)
            self._mailbox_path(run_id).unlink(missing_ok=True)
            journal.unlink()
            self._tails.pop(run_id, None)
        fsync_dir(self.dir)
        return existed

    # ── leases ───────────────────────────────────────────────────────────────────
    def _renew_lease(self, run_id: str, owner: str, fence: int, ttl: float) -> float | None:
        with self._locked(run_id, exclusive=True, create=False) as fd:
            if fd is None:
                return None
            lease = self._read_lease(run_id)
            if lease["fence"] != fence or lease["owner"] != owner:
                return None
            lease["expires_at"] = time.time() + ttl
            self._write_lease(run_id, lease)
        return float(lease["expires_at"])

    # ── reads ────────────────────────────────────────────────────────────────────
    def _event_batches(self, run_id: str, since: int) -> Generator[list[Any], None, None]:
        for rec in self._records(run_id):
            yield rec["events"]

    def next_seq(self, run_id: str) -> int:
        with self._locked(run_id, exclusive=False, create=False) as fd:
            return self._tail(run_id, fd).next_seq if fd is not None else 1

    def run_info(self, run_id: str) -> RunInfo | None:
        with self._locked(run_id, exclusive=False, create=False) as fd:
            if fd is None or not self._exists(run_id, fd):
                return None
            tail = self._tail(run_id, fd)
            header = checked_header(tail.header or self._first_header(run_id), run_id,
                                    lambda: self._where(run_id, "version", tail.version))
        lease = self._read_lease(run_id)
        return RunInfo.from_header(header, owner=lease["owner"],
                                   lease_expires_at=lease["expires_at"],
                                   cancel_requested=bool(lease.get("cancel_requested")))

    def _first_header(self, run_id: str) -> dict[str, Any]:
        for rec in self._records(run_id):
            if "header" in rec:
                header: dict[str, Any] = rec["header"]
                return header
        return minimal_header(run_id)

    def _run_infos(self, query: RunQuery) -> Iterator[RunInfo]:
        for path in self.dir.glob("*.jsonl"):
            run_id = path.name[: -len(".jsonl")]
            if query.search is not None and query.search not in run_id:
                continue  # the file name is the run id: no need to read its header
            info = self.run_info(run_id)
            if info is not None:
                yield info

    def _step_records(self, run_id: str, step: int) -> Iterator[tuple[Any, Callable[[], str]]]:
        for rec in self._records(run_id):
            for item in rec.get("steps", ()):
                step_of = item.get("step") if type(item) is dict else None
                yield item, partial(self._where, run_id, "steps", step_of)

    def _commits(self, run_id: str) -> list[dict[str, Any]]:
        return [rec for rec in self._records(run_id) if "version" in rec]

    def _latest_snapshot(self, run_id: str, max_version: int | None) -> tuple[int, str] | None:
        for rec in reversed(self._commits(run_id)):
            if rec.get("snapshot") and (max_version is None or rec["version"] <= max_version):
                path = self._snap_dir(run_id) / f"{rec['version']:012d}.json"
                try:
                    return rec["version"], path.read_text("ascii")
                except FileNotFoundError:
                    raise corrupted(str(path), "the run's snapshot of this version is "
                                    "missing (the journal says it was written)") from None
                except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
                    raise corrupted(str(path), f"the snapshot cannot be read ({exc})") from exc
        return None

    def _deltas(self, run_id: str, after: int, upto: int | None) -> list[tuple[int, str]]:
        return [(rec["version"], jsonutil.dumps(rec["delta"])) for rec in self._commits(run_id)
                if rec["version"] > after and (upto is None or rec["version"] <= upto)]

    def _commits_at(self, run_id: str, step: int) -> list[tuple[int, str | None]]:
        return [(rec["version"], rec["node"]) for rec in self._commits(run_id)
                if rec["step"] == step]

    def _history(self, run_id: str) -> list[tuple[int, str]]:
        return self._deltas(run_id, 0, None)

    def __repr__(self) -> str:
        return f"JSONLCheckpointer({str(self.dir)!r})"


def _record_problem(rec: Any) -> str | None:
    """Why a parsed journal line is not a record this store writes, or None."""
    if type(rec) is not dict:
        return f"the line holds a {type(rec).__name__}, not a journal record"
    if type(rec.get("events")) is not list:
        return "the line has no list of events, so it is not a journal record"
    if "version" in rec:
        delta = rec.get("delta")
        if type(rec["version"]) is not int or type(rec.get("step")) is not int:
            return "its state commit's version or step is not a whole number"
        if type(delta) is not dict or type(delta.get("header")) is not dict:
            return "its state commit has no delta with a header"
        if rec.get("node") is not None and type(rec["node"]) is not str:
            return f"its state commit's node is {rec['node']!r}, not a name"
    if "steps" in rec and type(rec["steps"]) is not list:
        return "its step records are not a list"
    if "header" in rec and type(rec["header"]) is not dict:
        return "its header is not an object"
    if "snapshot" in rec and rec["snapshot"] is not True:
        return "its snapshot flag is not true"
    return None


def _flock(fd: int, exclusive: bool, path: Path, timeout: float) -> None:
    """``flock`` that gives up after ``timeout`` seconds. (flock itself has no timeout, and
    a blocking one cannot be interrupted without a signal; uncontended, this is one call.)"""
    try:
        # Imported here, not with the module: the other stores, and `import purpose_agent`,
        # work where fcntl does not exist (Windows).
        import fcntl
    except ImportError:
        raise StoreError(
            f"the JSONL store locks its journals with fcntl.flock, which this platform "
            f"lacks (opening {str(path)!r}); use the SQLite store (sqlite:///runs.db)"
        ) from None
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
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


def _lease_problem(lease: Any) -> str | None:
    """Why a parsed lease file is not a lease, or None."""
    if type(lease) is not dict:
        return f"it holds a {type(lease).__name__}, not a lease"
    if type(lease.get("fence")) is not int:
        return "it has no whole-number fence"
    if "owner" not in lease or (lease["owner"] is not None and type(lease["owner"]) is not str):
        return "its owner is missing or not a name"
    expires = lease.get("expires_at", 0)
    if expires is not None and type(expires) not in (int, float):
        return "its expiry is not a time"
    return None
