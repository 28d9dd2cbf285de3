"""Fixtures for the agent tests: a real OpenAI-compatible server on 127.0.0.1, real
SQLite files and a real PostgreSQL, and real child processes that import
tests/agents/agent_flows.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import API_KEY, Child

from purpose_agent.agents.testing import AnthropicTestServer, OpenAICompatibleTestServer
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


@pytest.fixture
def claude() -> Iterator[AnthropicTestServer]:
    """A real server on 127.0.0.1 speaking Anthropic's Messages API (key required)."""
    with AnthropicTestServer(api_key=API_KEY, model="claude-test") as srv:
        yield srv


@pytest.fixture(params=["sqlite", "postgres"])
def claude_child(request: pytest.FixtureRequest, tmp_path: Path,
                 claude: AnthropicTestServer) -> Iterator[Child]:
    """A child process whose model is Claude (``claude``), on SQLite or PostgreSQL."""
    db = request.getfixturevalue("pg_url") if request.param == "postgres" \
        else tmp_path / "runs.db"
    runner = Child(db, tmp_path / "effects.log", claude)
    yield runner
    runner.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    """A SQLite file, or the session's PostgreSQL server (tests/conftest.py)."""
    url = (request.getfixturevalue("pg_url") if request.param == "postgres"
           else f"sqlite:///{tmp_path}/runs.db")
    with open_checkpointer(url) as cp:
        yield cp
