"""open_checkpointer: which URL opens which store, and a clear error for anything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
    default_url,
    open_checkpointer,
)
from purpose_agent.runtime.state import RunState


def _sync_level(cp: SQLiteCheckpointer) -> int:
    return cp._db.execute("PRAGMA synchronous").fetchone()[0]


def _stores_a_run(cp) -> None:
    cp.save_snapshot("r1", RunState(run_id="r1", data={"ok": 1}))
    assert cp.load_latest("r1").data == {"ok": 1}


def test_memory_url():
    cp = open_checkpointer("memory://")
    assert isinstance(cp, InMemoryCheckpointer)
    _stores_a_run(cp)
    assert open_checkpointer("memory://").list_runs() == [], "each memory store is its own"


def test_jsonl_url_creates_the_directory(tmp_path):
    target = tmp_path / "not" / "yet" / "there"
    cp = open_checkpointer(f"jsonl:///{target}")
    assert isinstance(cp, JSONLCheckpointer)
    assert target.is_dir()
    _stores_a_run(cp)
    assert (target / "r1.jsonl").is_file()


def test_jsonl_constructor_creates_the_directory_too(tmp_path):
    JSONLCheckpointer(tmp_path / "x" / "y")
    assert (tmp_path / "x" / "y").is_dir()


def test_sqlite_url_is_full_by_default_and_normal_on_request(tmp_path):
    full = open_checkpointer(f"sqlite:///{tmp_path / 'full.db'}")
    assert isinstance(full, SQLiteCheckpointer)
    assert full.path == tmp_path / "full.db" and _sync_level(full) == 2
    _stores_a_run(full)
    normal = open_checkpointer(f"sqlite:///{tmp_path / 'sub' / 'normal.db'}?synchronous=NORMAL")
    assert _sync_level(normal) == 1 and normal.synchronous == "NORMAL"
    assert (tmp_path / "sub" / "normal.db").is_file()
    lower = open_checkpointer(f"sqlite:///{tmp_path / 'n2.db'}?synchronous=normal")
    assert _sync_level(lower) == 1


@pytest.mark.parametrize("name", ["runs.db", "runs.sqlite", "runs.sqlite3", "RUNS.DB"])
def test_a_plain_database_path_opens_sqlite(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    cp = open_checkpointer(name)
    assert isinstance(cp, SQLiteCheckpointer)
    _stores_a_run(cp)
    assert (tmp_path / name).is_file()
    absolute = open_checkpointer(tmp_path / "abs" / name)
    assert isinstance(absolute, SQLiteCheckpointer)
    assert (tmp_path / "abs" / name).is_file()


def test_the_environment_variable_names_the_default_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PURPOSE_AGENT_DB", f"jsonl:///{tmp_path / 'from-env'}")
    assert default_url() == f"jsonl:///{tmp_path / 'from-env'}"
    cp = open_checkpointer()
    assert isinstance(cp, JSONLCheckpointer) and cp.dir == tmp_path / "from-env"
    monkeypatch.setenv("PURPOSE_AGENT_DB", "memory://")
    assert isinstance(open_checkpointer(None), InMemoryCheckpointer)


def test_without_the_variable_the_default_is_sqlite_in_the_working_directory(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PURPOSE_AGENT_DB", raising=False)
    cp = open_checkpointer()
    assert isinstance(cp, SQLiteCheckpointer)
    _stores_a_run(cp)
    assert (tmp_path / ".purpose_agent" / "runs.db").is_file()


@pytest.mark.parametrize("url", [
    "redis://localhost/0", "runs.txt", "runs", "", "http://example.com/x.db",
    "sqlite:///x.db?mode=ro", "sqlite://", "jsonl://",
])
def test_an_unknown_form_is_a_clear_store_error(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"memory://|sqlite|path") as err:
        open_checkpointer(url)
    assert repr(url) in str(err.value) or "PostgreSQL" in str(err.value)
    assert list(Path(tmp_path).iterdir()) == [], "a refused URL creates nothing"


def test_a_bad_synchronous_level_is_refused(tmp_path):
    with pytest.raises(StoreError, match=r"synchronous='SOMETIMES'.*use FULL"):
        open_checkpointer(f"sqlite:///{tmp_path / 'x.db'}?synchronous=SOMETIMES")
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteCheckpointer(tmp_path / "x.db", synchronous="fast")  # type: ignore[arg-type]
    assert not (tmp_path / "x.db").exists()
