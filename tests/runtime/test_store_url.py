"""Store URLs follow the ecosystem's convention (SQLAlchemy, Django, dj-database-url):
three slashes then a relative path, four slashes for an absolute one, ``:memory:``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
    StoreURL,
    open_checkpointer,
    parse_store_url,
)
from purpose_agent.runtime.state import RunState


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///runs.db", StoreURL("sqlite", Path("runs.db"))),
    ("sqlite:///sub/dir/runs.db", StoreURL("sqlite", Path("sub/dir/runs.db"))),
    ("sqlite:////var/lib/runs.db", StoreURL("sqlite", Path("/var/lib/runs.db"))),
    ("sqlite3:///runs.db", StoreURL("sqlite", Path("runs.db"))),
    ("sqlite:///:memory:", StoreURL("sqlite", None)),
    ("sqlite:///runs.db?synchronous=normal",
     StoreURL("sqlite", Path("runs.db"), {"synchronous": "NORMAL"})),
    ("jsonl:///journals", StoreURL("jsonl", Path("journals"))),
    ("jsonl:////srv/journals", StoreURL("jsonl", Path("/srv/journals"))),
    ("jsonl:///:memory:", StoreURL("jsonl", None)),
    ("memory://", StoreURL("memory", None)),
    ("runs.db", StoreURL("sqlite", Path("runs.db"))),
    ("/abs/runs.sqlite3", StoreURL("sqlite", Path("/abs/runs.sqlite3"))),
    ("postgresql://agent@db.internal:5432/runs?sslmode=require",
     StoreURL("postgresql", None, {"sslmode": "require"})),
    ("postgres://localhost/runs", StoreURL("postgresql", None)),
])
def test_each_form_parses_to_its_store_and_path(url, expected):
    parsed = parse_store_url(url)
    assert (parsed.kind, parsed.path, parsed.options) == (
        expected.kind, expected.path, expected.options)
    assert parsed.url == url
    assert parsed.in_memory == (expected.kind == "memory" or (
        expected.kind in ("sqlite", "jsonl") and expected.path is None))


@pytest.mark.parametrize(("url", "needle"), [
    ("sqlite://runs.db", "names a host ('runs.db')"),
    ("jsonl://dir/x", "(jsonl:///dir/x)"),
    ("sqlite://", "names no path"),
    ("sqlite:///x.db?mode=ro", "unknown option"),
    ("jsonl:///d?synchronous=FULL", "JSONL store takes none"),
    ("ftp://host/x.db", "cannot tell which store"),
])
def test_a_url_that_cannot_be_used_says_which_forms_can(url, needle):
    with pytest.raises(StoreError, match=re.escape(needle)):
        parse_store_url(url)


def _stores_a_run(cp) -> None:
    cp.save_snapshot("r1", RunState(run_id="r1", data={"ok": 1}))
    assert cp.load_latest("r1").data == {"ok": 1}


def test_three_slashes_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cp = open_checkpointer("sqlite:///rel/runs.db")
    assert isinstance(cp, SQLiteCheckpointer)
    _stores_a_run(cp)
    assert (tmp_path / "rel" / "runs.db").is_file()
    assert not Path("/rel/runs.db").exists()
    jl = open_checkpointer("jsonl:///journals")
    assert isinstance(jl, JSONLCheckpointer)
    _stores_a_run(jl)
    assert (tmp_path / "journals" / "r1.jsonl").is_file()


def test_four_slashes_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    cp = open_checkpointer(f"sqlite:///{elsewhere / 'runs.db'}")  # sqlite:////tmp/…
    _stores_a_run(cp)
    assert (elsewhere / "runs.db").is_file()
    jl = open_checkpointer(f"jsonl:///{elsewhere / 'journals'}")
    _stores_a_run(jl)
    assert (elsewhere / "journals" / "r1.jsonl").is_file()
    assert not (tmp_path / "tmp").exists(), "an absolute path is not made relative"


def test_memory_forms_create_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sqlite_memory = open_checkpointer("sqlite:///:memory:")
    assert isinstance(sqlite_memory, SQLiteCheckpointer)
    _stores_a_run(sqlite_memory)
    jsonl_memory = open_checkpointer("jsonl:///:memory:")
    assert isinstance(jsonl_memory, InMemoryCheckpointer)
    _stores_a_run(jsonl_memory)
    assert list(tmp_path.iterdir()) == []


def test_postgresql_urls_name_the_postgresql_store_and_create_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for url in ("postgresql://u@127.0.0.1:1/db", "postgres://127.0.0.1:1/db"):
        parsed = parse_store_url(url)
        assert (parsed.kind, parsed.path, parsed.url) == ("postgresql", None, url)
        # Nothing listens on port 1: the PostgreSQL store says so, it is not taken for a path.
        with pytest.raises(StoreError, match="PostgreSQL"):
            open_checkpointer(url)
    assert list(tmp_path.iterdir()) == []


def test_the_default_store_is_opened_once_per_file_whatever_the_url_form(tmp_path,
                                                                         monkeypatch):
    from purpose_agent.flow import graph

    opened: dict = {}
    monkeypatch.setattr(graph, "_default_stores", opened)
    monkeypatch.chdir(tmp_path)
    stores = []
    for url in ("sqlite:///runs.db", "runs.db", str(tmp_path / "runs.db"),
                f"sqlite:///{tmp_path / 'runs.db'}"):
        monkeypatch.setenv("PURPOSE_AGENT_DB", url)
        stores.append(graph._store(None))
    try:
        assert len(opened) == 1 and all(store is stores[0] for store in stores)
    finally:
        for store in opened.values():
            store.close()
