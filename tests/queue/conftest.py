"""Fixtures of the run-queue suite: every test runs on SQLite and on PostgreSQL.

``queue_url`` is the URL of an empty store other processes can open too (a SQLite file
under the test's directory, or a PostgreSQL schema nobody has used yet).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer

STORES = ["sqlite", "postgres"]


@pytest.fixture(params=STORES)
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_new_url")
        return url
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def queue_cp(queue_url: str) -> Iterator[BaseCheckpointer]:
    cp = open_checkpointer(queue_url)
    yield cp
    cp.close()
