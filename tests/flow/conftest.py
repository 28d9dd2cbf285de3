"""Fixtures for the engine tests: real stores and real child processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_harness import Child


@pytest.fixture(params=["sqlite", "jsonl"])
def child(request: pytest.FixtureRequest, tmp_path: Path) -> Child:
    url = f"sqlite:///{tmp_path}/runs.db" if request.param == "sqlite" else f"jsonl:///{tmp_path}/runs"
    return Child(url, tmp_path / "effects.log")


@pytest.fixture
def sqlite_child(tmp_path: Path) -> Child:
    return Child(f"sqlite:///{tmp_path}/runs.db", tmp_path / "effects.log")
