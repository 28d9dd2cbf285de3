"""Helpers shared by the agent tests (importable: tests/agents is on the test path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from purpose_agent.agents.testing import AnthropicTestServer, OpenAICompatibleTestServer
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer

T = TypeVar("T")
HERE = Path(__file__).parent
CHILD = HERE / "agent_child.py"
API_KEY = "pa-test-key-7f3a9c21e5d84b06"  # not token-shaped: only explicit redaction hides it


@dataclass
class Child:
    """Runs agent_child.py in a fresh interpreter, against one store (``db``: a SQLite
    file or a store URL, PostgreSQL included) and server (an OpenAI-compatible one for
    the ``support`` flow, an Anthropic one for ``support_claude``)."""

    db: Path | str
    effects: Path
    server: OpenAICompatibleTestServer | AnthropicTestServer
    _store: BaseCheckpointer | None = field(default=None, init=False, repr=False)

    def __call__(self, action: str, run_id: str, extra: Any = None, *, flow: str = "support",
                 kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._args(action, run_id, extra, flow),
                              env=self.env(kill_at=kill_at), capture_output=True, text=True,
                              timeout=60, cwd=HERE)

    def start(self, action: str, run_id: str, extra: Any = None, *, flow: str = "support",
              hang_at: str | None = None) -> subprocess.Popen[str]:
        """The child, running (it blocks in the tool ``hang_at`` names until killed)."""
        return subprocess.Popen(self._args(action, run_id, extra, flow),
                                env=self.env(hang_at=hang_at), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=HERE)

    def _args(self, action: str, run_id: str, extra: Any, flow: str) -> list[str]:
        args = [sys.executable, str(CHILD), action, flow, str(self.db), run_id]
        if extra is not None:
            args.append(json.dumps(extra))
        return args

    def env(self, *, kill_at: str | None = None, hang_at: str | None = None
            ) -> dict[str, str]:
        """The child's environment: the server's URL and key, the effects file."""
        env = {**os.environ, "EFFECTS_FILE": str(self.effects), "OPENAI_API_KEY": API_KEY,
               "PURPOSE_AGENT_BASE_URL": self.server.url, "ANTHROPIC_API_KEY": API_KEY,
               "ANTHROPIC_BASE_URL": self.server.url}
        for name in ("KILL_AT", "HANG_AT", "OPENAI_BASE_URL"):
            env.pop(name, None)
        if kill_at:
            env["KILL_AT"] = kill_at
        if hang_at:
            env["HANG_AT"] = hang_at
        return env

    def effects_lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def store(self) -> BaseCheckpointer:
        """The test's own handle on the child's store (one, closed by the fixture)."""
        if self._store is None:
            self._store = open_checkpointer(str(self.db))
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
    """``condition()`` once it is truthy; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        tick.wait(0.02)  # re-checks a condition: polling, not synchronisation by time
    return value


def kinds(store: BaseCheckpointer, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The payloads of a run's events of one kind, in seq order."""
    return [e.payload for e in store.list_events(run_id) if str(e.kind) == kind]
