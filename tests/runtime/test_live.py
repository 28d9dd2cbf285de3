"""Live output (never journaled): a per-run file on this host, and on PostgreSQL also a
per-run NOTIFY channel (each item under the 8000-byte payload limit) that a reader on
another host hears; a reader on this host shows each item once."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.live import LIVE_DIR_ENV, live_path, live_reader, publish_live

# Multi-byte, astral and a lone surrogate (LLMs emit them): every kind of text survives.
TEXT = ("héllo wörld — 日本語 🚀 \udce9 " * 700)


def test_a_long_item_is_split_under_the_notify_limit_and_reads_back_whole() -> None:
    from purpose_agent.runtime.checkpoint._postgres_live import NOTIFY_LIMIT, notify_payloads

    item = {"node": "support", "kind": "model.token", "turn": 1, "text": TEXT}
    payloads = notify_payloads(item)
    assert len(payloads) > 2
    assert all(len(p.encode()) <= NOTIFY_LIMIT < 8000 for p in payloads)
    pieces = [json.loads(p) for p in payloads]
    assert "".join(p["text"] for p in pieces) == TEXT
    assert all({k: v for k, v in p.items() if k != "text"} ==
               {"node": "support", "kind": "model.token", "turn": 1} for p in pieces)
    assert notify_payloads({"blob": "x" * 9000}) == []  # nothing to split: not sent


def test_on_postgresql_live_items_reach_a_reader_on_another_host(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_checkpointer(pg_url) as writer, open_checkpointer(pg_url) as follower:
        # Another host: its live directory is not the writer's.
        monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "elsewhere"))
        reader = live_reader(follower, "r-1")
        other = live_reader(follower, "r-2")  # another run's channel hears nothing
        monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "live"))
        here = live_reader(follower, "r-1")  # this host: the file and the channel
        try:
            publish_live(writer, "r-1", {"kind": "model.token", "text": "Hel"})
            publish_live(writer, "r-1", {"kind": "model.token", "text": TEXT})
            publish_live(writer, "r-1", {"kind": "model.token", "text": "lo"})
            for one in (reader, here):
                got: list[dict[str, Any]] = []
                deadline, tick = time.monotonic() + 30, threading.Event()
                while "".join(i["text"] for i in got) != "Hel" + TEXT + "lo":
                    assert time.monotonic() < deadline, got[:3]
                    got += one.read()
                    tick.wait(0.01)  # re-reads the socket: polling, not synchronisation
            assert [i["text"] for i in here.read()] == []  # the channel's copies: dropped
            assert other.read() == []
        finally:
            for one in (reader, here, other):
                one.close()
        assert not (tmp_path / "elsewhere").exists()


def test_on_sqlite_live_items_go_to_this_hosts_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "live"))
    with open_checkpointer(f"sqlite:///{tmp_path}/runs.db") as store:
        publish_live(store, "r-1", {"kind": "model.token", "text": "Hel"})
        reader = live_reader(store, "r-1")  # a file is read from its start
        publish_live(store, "r-1", {"kind": "model.token", "text": TEXT})
        assert [i["text"] for i in reader.read()] == ["Hel", TEXT]
        assert reader.read() == []
        assert live_path(store, "r-1").exists()
