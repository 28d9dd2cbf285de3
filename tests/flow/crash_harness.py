"""Drives crash_child.py in real child processes against one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purpose_agent import open_checkpointer

HERE = Path(__file__).parent
CHILD = HERE / "crash_child.py"


@dataclass
class Child:
    """Runs crash_child.py in a fresh interpreter against one store."""

    url: str
    effects: Path
    _store: Any = field(default=None, repr=False, compare=False)
    script: Path = CHILD  # the child program (wait_child.py for the durable-wait tests)

    def env(self, crash: str | None) -> dict[str, str]:
        env = {**os.environ, "EFFECTS_FILE": str(self.effects)}
        env.pop("CRASH_AT", None)
        if crash:
            env["CRASH_AT"] = crash
        return env

    def __call__(self, action: str, flow: str, run_id: str, extra: Any = None, *,
                 crash: str | None = None) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, str(self.script), action, flow, self.url, run_id]
        if extra is not None:
            args.append(json.dumps(extra))
        return subprocess.run(args, env=self.env(crash), capture_output=True, text=True,
                              timeout=120, cwd=HERE)

    def start(self, action: str, flow: str, run_id: str,
              extra: Any = None) -> subprocess.Popen[str]:
        """A child that keeps running; talk to it through stdin/stdout."""
        args = [sys.executable, str(self.script), action, flow, self.url, run_id]
        if extra is not None:
            args.append(json.dumps(extra))
        return subprocess.Popen(args, env=self.env(None), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=HERE)

    def effects_lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def store(self):
        """This process's view of the store (opened once, closed by close())."""
        if self._store is None:
            self._store = open_checkpointer(self.url)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])
