"""Commands that only read (runs, show, events, transcript) never create, upgrade or
change a store: a missing one is "no store at PATH", another application's database or
an empty file is "not a purpose-agent store" and stays byte for byte as it was, and a
store in a read-only directory or file can still be listed and inspected."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_stores import SQLITE_ONLY

from purpose_agent.runtime.checkpoint import SQLiteCheckpointer, open_checkpointer

STORE = 5
SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))
SCHEMA2 = Path(__file__).resolve().parents[1] / "flow" / "data" / "schema2.db"


def _readers(run_id: str = "r1") -> list[list[str]]:
    return [["runs"], ["runs", "--json"], ["show", run_id], ["events", run_id],
            ["transcript", run_id]]


def _listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@SQLITE_ONLY  # about SQLite and JSONL files and directories
def test_a_missing_store_is_reported_and_not_created(cli) -> None:
    for args in _readers():
        cli.assert_error(cli(*args), STORE, f"no store at {cli.db}")
    jsonl = cli.cwd / "journals"
    cli.assert_error(cli("runs", "--db", f"jsonl:///{jsonl}"), STORE, f"no store at {jsonl}")
    assert not cli.db.parent.exists() and not jsonl.exists()


@SQLITE_ONLY  # about SQLite and JSONL files and directories
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_another_applications_database_is_refused_untouched(cli, journal_mode) -> None:
    cli.db.parent.mkdir()
    db = sqlite3.connect(cli.db)
    db.execute(f"PRAGMA journal_mode = {journal_mode}")
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 9.5)")
    db.commit()
    db.close()
    before = _listing(cli.db.parent)
    for args in _readers():
        cli.assert_error(cli(*args), STORE, f"{cli.db} is not a purpose-agent store")
    assert _listing(cli.db.parent) == before, "same files, same bytes"


@SQLITE_ONLY  # about SQLite and JSONL files and directories
def test_an_empty_file_stays_empty(cli) -> None:
    cli.db.parent.mkdir()
    cli.db.touch()
    for args in _readers():
        cli.assert_error(cli(*args), STORE, f"{cli.db} is not a purpose-agent store",
                         "empty file")
    assert _listing(cli.db.parent) == {"runs.db": b""}


@SQLITE_ONLY  # about SQLite and JSONL files and directories
def test_a_store_of_the_previous_schema_is_read_without_being_upgraded(cli) -> None:
    cli.db.parent.mkdir()
    shutil.copy(SCHEMA2, cli.db)
    before = _listing(cli.db.parent)
    listed = json.loads(cli.ok("runs", "--json").stdout)
    assert listed and all(row["run_id"] for row in listed)
    for row in listed:
        cli.ok("show", row["run_id"])
        cli.ok("transcript", row["run_id"])
    assert _listing(cli.db.parent) == before
    assert sqlite3.connect(cli.db).execute("SELECT value FROM meta").fetchone() == ("2",)


def test_read_only_stores_refuse_writes_and_create_nothing(tmp_path) -> None:
    with pytest.raises(Exception, match="no store at"):
        open_checkpointer(f"sqlite:///{tmp_path / 'none.db'}", read_only=True)
    with pytest.raises(Exception, match="no store at"):
        open_checkpointer(f"jsonl:///{tmp_path / 'none'}", read_only=True)
    assert list(tmp_path.iterdir()) == []
    SQLiteCheckpointer(tmp_path / "s.db").close()
    open_checkpointer(f"jsonl:///{tmp_path / 'j'}")
    from purpose_agent.runtime.state import RunState
    for url in (f"sqlite:///{tmp_path / 's.db'}", f"jsonl:///{tmp_path / 'j'}"):
        reader = open_checkpointer(url, read_only=True)
        with pytest.raises(Exception, match="read_only=True"):
            reader.save_snapshot("r", RunState(run_id="r"))
        assert reader.list_runs() == []


# ── really read-only places ──────────────────────────────────────────────────────────
def _read_only_mounts() -> str | None:
    """How this machine can make a path really read-only: "mount" (a read-only bind
    mount in a private mount namespace: refused even to root), "chmod" (not root), or
    None."""
    if shutil.which("unshare") and shutil.which("mount"):
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"],
                               capture_output=True)
        if probe.returncode == 0:
            return "mount"
    return "chmod" if os.geteuid() != 0 else None


MOUNTS = _read_only_mounts()
needs_read_only = pytest.mark.skipif(
    MOUNTS is None, reason="running as root without mount namespaces: no way to make a "
    "path read-only for this process (the bytes-unchanged tests above still run)")


def _run_read_only(cli, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``purpose-agent ARGS`` with ``target`` (a directory or a file) read-only."""
    assert SCRIPT
    if MOUNTS == "mount":
        script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && '
                  'exec "$@"')
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                   "sh", str(target), SCRIPT, *args]
        return subprocess.run(command, cwd=cli.cwd, env=cli.env, text=True,
                              capture_output=True, timeout=60)
    mode = target.stat().st_mode
    target.chmod(0o555 if target.is_dir() else 0o444)
    try:
        return cli(*args)
    finally:
        target.chmod(mode)


def _finished_run(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "r1")
    assert sorted(p.name for p in cli.db.parent.iterdir()) == ["demo-effects.log", "runs.db"]


@SQLITE_ONLY  # about SQLite and JSONL files and directories
@needs_read_only
@pytest.mark.parametrize("store", ["sqlite", "jsonl"])
@pytest.mark.parametrize("which", ["directory", "file"])
def test_a_store_in_a_read_only_place_can_be_listed_and_inspected(cli, which, store) -> None:
    if store == "jsonl":
        cli.db = cli.cwd / "journals" / "r1.jsonl"  # the run's journal is the file
        cli.env["PURPOSE_AGENT_DB"] = f"jsonl:///{cli.db.parent}"
        cli.ok("demo", "--yes", "--run-id", "r1")
    else:
        _finished_run(cli)
    target = cli.db.parent if which == "directory" else cli.db
    before = _listing(cli.db.parent)
    listed = _run_read_only(cli, target, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["run_id"] for row in json.loads(listed.stdout)] == ["r1"]
    for args, needle in ((["show", "r1"], "completed"), (["events", "r1"], "run.finished"),
                         (["transcript", "r1"], "run finished after 5 node(s)")):
        result = _run_read_only(cli, target, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert needle in result.stdout, (args, result.stdout)
    if which == "directory":
        assert _listing(cli.db.parent) == before
    else:
        assert cli.db.read_bytes() == before[cli.db.name]


@SQLITE_ONLY  # about SQLite and JSONL files and directories
@needs_read_only
def test_a_read_only_directory_with_a_live_writers_files_reads_the_newest_commits(cli):
    _finished_run(cli)
    writer = SQLiteCheckpointer(cli.db)  # keeps -wal / -shm present, as a live process does
    try:
        cli.ok("demo", "--yes", "--run-id", "r2")
        listed = _run_read_only(cli, cli.db.parent, "runs", "--json")
        assert listed.returncode == 0, listed.stderr
        assert {row["run_id"] for row in json.loads(listed.stdout)} == {"r1", "r2"}
    finally:
        writer.close()
