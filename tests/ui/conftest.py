"""Fixtures of the inspector tests: a real inspector per test (see ui_server.py) and a
SQLite store in a temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from ui_server import Inspector, StartInspector

from purpose_agent import Flow
from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.ui import Settings, create_app
from purpose_agent.ui.server import bind, uvicorn_config


@pytest.fixture
def start_inspector() -> Iterator[StartInspector]:
    """Start an inspector on ``url`` (``flows``: Flow objects it may run; other keyword
    arguments are :class:`Settings` fields). Stopped at the end of the test."""
    started: list[Inspector] = []

    def start(url: str, *, flows: tuple[Flow, ...] = (), host: str = "127.0.0.1",
              **options: Any) -> Inspector:
        sock = bind(host, 0)
        settings = Settings(url=url, host=host, port=sock.getsockname()[1], **options)
        cp = open_checkpointer(url, read_only=settings.read_only)
        app = create_app(settings, checkpointer=cp, flows=flows)
        server = uvicorn.Server(uvicorn_config(app))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        inspector = Inspector(f"http://127.0.0.1:{settings.port}", cp, app.state.actions,
                              server, thread)
        started.append(inspector)
        return inspector

    yield start
    for inspector in started:
        inspector.stop()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"
