"""Fixtures shared by the runtime suite.

``store`` is one behaviour suite's view of a backend: every test that takes it runs
against each backend in ``BACKENDS``. A new backend (PostgreSQL) plugs in by adding a
``Backend`` entry here; the tests do not change.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
)
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer

# No example database: the suite must not leave a .hypothesis directory behind.
settings.register_profile("runtime", database=None, deadline=None)
settings.load_profile("runtime")


@dataclass(frozen=True)
class Backend:
    """How to open one kind of store at a location under ``tmp_path``."""

    name: str
    open: Callable[[Path], BaseCheckpointer]
    url: Callable[[Path], str] | None = None  # for other processes; None: process-local


BACKENDS = {
    "memory": Backend("memory", lambda tmp: InMemoryCheckpointer()),
    "jsonl": Backend("jsonl", lambda tmp: JSONLCheckpointer(tmp / "store"),
                     lambda tmp: f"jsonl:///{tmp / 'store'}"),
    "sqlite": Backend("sqlite", lambda tmp: SQLiteCheckpointer(tmp / "runs.db"),
                      lambda tmp: f"sqlite:///{tmp / 'runs.db'}"),
}
SHARED = [name for name, backend in BACKENDS.items() if backend.url is not None]


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    """A fresh, empty store of each backend."""
    cp = BACKENDS[request.param].open(tmp_path)
    yield cp
    cp.close()


@dataclass
class SharedStore:
    """A store other processes can open too: ``url`` is what they pass to open_checkpointer."""

    name: str
    url: str
    store: BaseCheckpointer
    reopen: Callable[[], BaseCheckpointer]


@pytest.fixture(params=SHARED)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    """A store of each backend that lives in files, shareable across processes."""
    backend = BACKENDS[request.param]
    cp = backend.open(tmp_path)
    assert backend.url is not None
    yield SharedStore(request.param, backend.url(tmp_path), cp, lambda: backend.open(tmp_path))
    cp.close()


class Child:
    """A Python subprocess driven line by line over stdin/stdout (no sleeps)."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            assert self.proc.stderr is not None
            raise AssertionError(f"child exited ({self.proc.returncode}): "
                                 f"{self.proc.stderr.read()}")
        return line.strip()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        """Close stdin, wait for a clean exit, and return the rest of stdout."""
        out, err = self.proc.communicate()
        assert self.proc.returncode == 0, err
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """Start child processes; any still alive at the end of the test are killed."""
    children: list[Child] = []

    def start(code: str, *args: str) -> Child:
        child = Child(code, *args)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
