"""Fixtures for the engine tests: real stores and real child processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_harness import Child


@pytest.fixture(params=["sqlite", "jsonl", "postgres"])
def child(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Child]:
    if request.param == "postgres":  # the session's PostgreSQL server (tests/conftest.py)
        url = request.getfixturevalue("pg_url")
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/runs.db"
    else:
        url = f"jsonl:///{tmp_path}/runs"
    runner = Child(url, tmp_path / "effects.log")
    yield runner
    runner.close()


@pytest.fixture(params=["sqlite", "jsonl"])
def file_child(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Child]:
    """A child on a store in local files (for tests about this machine's disk)."""
    url = (f"sqlite:///{tmp_path}/runs.db" if request.param == "sqlite"
           else f"jsonl:///{tmp_path}/runs")
    runner = Child(url, tmp_path / "effects.log")
    yield runner
    runner.close()


@pytest.fixture
def sqlite_child(tmp_path: Path) -> Child:
    return Child(f"sqlite:///{tmp_path}/runs.db", tmp_path / "effects.log")
