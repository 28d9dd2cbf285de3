"""Fixtures for the agent tests: a real OpenAI-compatible server on 127.0.0.1, real
SQLite files and a real PostgreSQL, and real child processes that import
tests/agents/agent_flows.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Child

from purpose_agent.agents.testing import OpenAICompatibleTestServer
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer


@pytest.fixture
def server() -> Iterator[OpenAICompatibleTestServer]:
    with OpenAICompatibleTestServer() as srv:
        yield srv


@pytest.fixture(params=["sqlite", "postgres"])
def child(request: pytest.FixtureRequest, tmp_path: Path,
          server: OpenAICompatibleTestServer) -> Iterator[Child]:
    """A child process on a SQLite file, or on the session's PostgreSQL server."""
    if request.param == "postgres":  # tests/conftest.py: skipped locally, required in CI
        runner = Child(request.getfixturevalue("pg_url"), tmp_path / "effects.log", server)
    else:
        runner = Child(tmp_path / "runs.db", tmp_path / "effects.log", server)
    yield runner
    runner.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    """A SQLite file, or the session's PostgreSQL server (tests/conftest.py)."""
    url = (request.getfixturevalue("pg_url") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/runs.db")
    with open_checkpointer(url) as cp:
        yield cp
