"""Fixtures for the agent tests: a real OpenAI-compatible server on 127.0.0.1, real
SQLite files, and real child processes that import tests/agents/agent_flows.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Child

from purpose_agent.agents.testing import OpenAICompatibleTestServer


@pytest.fixture
def server() -> Iterator[OpenAICompatibleTestServer]:
    with OpenAICompatibleTestServer() as srv:
        yield srv


@pytest.fixture
def child(tmp_path: Path, server: OpenAICompatibleTestServer) -> Child:
    return Child(tmp_path / "runs.db", tmp_path / "effects.log", server)
