"""A real inspector: uvicorn serving the app on 127.0.0.1 from a thread,
on a socket bound (and listening) before the thread starts, so requests can be made at
once: they wait in the listen backlog until uvicorn accepts them. Driven over real HTTP
with httpx; stores are real SQLite files (or the PostgreSQL test server)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.ui.actions import Actions

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
