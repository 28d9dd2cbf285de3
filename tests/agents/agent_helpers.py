"""Helpers shared by the agent tests (importable: tests/agents is on the test path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purpose_agent.agents.testing import AnthropicTestServer, OpenAICompatibleTestServer
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer

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
        env = {**os.environ, "EFFECTS_FILE": str(self.effects), "OPENAI_API_KEY": API_KEY,
               "PURPOSE_AGENT_BASE_URL": self.server.url, "ANTHROPIC_API_KEY": API_KEY,
               "ANTHROPIC_BASE_URL": self.server.url}
        env.pop("KILL_AT", None)
        env.pop("OPENAI_BASE_URL", None)
        if kill_at:
            env["KILL_AT"] = kill_at
        args = [sys.executable, str(CHILD), action, flow, str(self.db), run_id]
        if extra is not None:
            args.append(json.dumps(extra))
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60,
                              cwd=HERE)

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


def kinds(store: BaseCheckpointer, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The payloads of a run's events of one kind, in seq order."""
    return [e.payload for e in store.list_events(run_id) if str(e.kind) == kind]
