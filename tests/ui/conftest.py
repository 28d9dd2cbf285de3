"""A real inspector for each test: uvicorn serving the app on 127.0.0.1 from a thread,
on a socket bound (and listening) before the thread starts, so requests can be made at
once: they wait in the listen backlog until uvicorn accepts them. Driven over real HTTP
with httpx; stores are real SQLite files (or the PostgreSQL test server)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from purpose_agent import Flow
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer
from purpose_agent.ui import Settings, create_app
from purpose_agent.ui.actions import Actions
from purpose_agent.ui.server import bind

_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


@dataclass
class Inspector:
    """A running inspector and an HTTP client that keeps its cookies, like a browser."""

    base: str
    cp: BaseCheckpointer
    actions: Actions
    server: uvicorn.Server
    thread: threading.Thread
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base, follow_redirects=False, timeout=30.0)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def csrf(self, path: str = "/runs") -> str:
        """The CSRF token the forms of ``path`` carry for this client's session."""
        page = self.get(path)
        assert page.status_code == 200, page.text
        found = _CSRF.search(page.text)
        assert found, f"no CSRF token on {path}"
        return found.group(1)

    def post(self, path: str, fields: dict[str, str] | None = None, *,
             csrf: str | None = None, **kwargs: Any) -> httpx.Response:
        """POST a form with this session's CSRF token (``csrf=""``: none)."""
        data = dict(fields or {})
        token = self.csrf() if csrf is None else csrf
        if token:
            data["csrf"] = token
        return self.client.post(path, data=data, **kwargs)

    def finished(self, run_id: str) -> None:
        """Wait until the action the page started on ``run_id`` has ended."""
        activity = self.actions.activity[run_id]
        assert activity.finished.wait(30), f"the page's {activity.verb} of {run_id} never ended"
        assert activity.error is None, activity.error

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)
        self.cp.close()


StartInspector = Callable[..., Inspector]


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
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
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
