"""A store file written by the previous release (SQLite schema 2) opens, upgrades in
place, and its runs go on: the paused one resumes with its answer, the crashed one is
taken over without repeating its refund, the finished one reads as it was."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

from purpose_agent import SQLiteCheckpointer
from purpose_agent.runtime.checkpoint.sqlite import SCHEMA_VERSION

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "approval_flow.py"


@pytest.fixture
def old_file(tmp_path: Path) -> Path:
    path = tmp_path / "schema2.db"
    shutil.copy(DATA / "schema2.db", path)  # see data/make_schema2_fixture.py
    return path


@pytest.fixture
def flow():
    spec = importlib.util.spec_from_file_location("approval_flow_for_upgrade", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.flow


def test_a_schema_2_file_upgrades_and_its_runs_go_on(old_file, flow, capsys):
    raw = sqlite3.connect(old_file)
    assert raw.execute("SELECT value FROM meta").fetchone() == ("2",)
    raw.close()
    cp = SQLiteCheckpointer(old_file)
    raw = sqlite3.connect(old_file)
    assert raw.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    raw.close()
    infos = {i.run_id: i for i in cp.list_run_infos()}
    assert {k: str(i.status) for k, i in infos.items()} == {
        "paused": "paused", "done": "completed", "crashed": "running"}
    assert cp.load_latest("done").data["receipt"] == "refund-D-1"
    done_events = [e.kind for e in cp.list_events("done")]
    assert done_events[0] == "run.started" and done_events[-1] == "run.finished"

    paused = flow.resume("paused", checkpointer=cp, answer=True)
    assert str(paused.status) == "completed" and paused.data["receipt"] == "refund-P-1"
    crashed = flow.resume("crashed", checkpointer=cp)  # its lease expired long ago
    assert str(crashed.status) == "completed" and crashed.data["receipt"] == "refund-C-1"
    out = capsys.readouterr().out
    assert "refunding 42.0 for P-1" in out
    assert "C-1" not in out, "the crashed run's refund (and lookup) replayed from its journal"

    for run_id in ("paused", "crashed", "done"):
        seqs = [e.seq for e in cp.list_events(run_id)]
        assert seqs == list(range(1, len(seqs) + 1))
        assert cp.run_info(run_id).status == "completed"
    assert [h["status"] for h in cp.list_history("paused")][-1] == "completed"
    cp.close()
    again = SQLiteCheckpointer(old_file)
    assert again.load_latest("crashed").data["receipt"] == "refund-C-1"
