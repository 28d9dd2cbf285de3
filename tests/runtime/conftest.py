"""Fixtures shared by the runtime suite.

``store`` is one behaviour suite's view of a backend: every test that takes it runs
against each backend in ``BACKENDS``. A new backend (PostgreSQL) plugs in by adding a
``Backend`` entry here; the tests do not change. The PostgreSQL backend runs on the
session's throwaway server (tests/conftest.py), one fresh schema per test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
    open_checkpointer,
)
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer

# No example database: the suite must not leave a .hypothesis directory behind.
settings.register_profile("runtime", database=None, deadline=None)
settings.load_profile("runtime")


@dataclass(frozen=True)
class Backend:
    """How to open one kind of store at a place: a directory under ``tmp_path``, or for
    a server's store (``server=True``) the URL of an empty one of the test's own."""

    name: str
    open: Callable[[Any], BaseCheckpointer]
    url: Callable[[Any], str] | None = None  # for other processes; None: process-local
    server: bool = False


BACKENDS = {
    "memory": Backend("memory", lambda tmp: InMemoryCheckpointer()),
    "jsonl": Backend("jsonl", lambda tmp: JSONLCheckpointer(tmp / "store"),
                     lambda tmp: f"jsonl:///{tmp / 'store'}"),
    "sqlite": Backend("sqlite", lambda tmp: SQLiteCheckpointer(tmp / "runs.db"),
                      lambda tmp: f"sqlite:///{tmp / 'runs.db'}"),
    "postgres": Backend("postgres", lambda url: open_checkpointer(url), lambda url: url,
                        server=True),
}
SHARED = [name for name, backend in BACKENDS.items() if backend.url is not None]


def _place(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    return request.getfixturevalue("pg_url") if backend.server else tmp_path


@pytest.fixture(params=list(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCheckpointer]:
    """A fresh, empty store of each backend."""
    backend = BACKENDS[request.param]
    cp = backend.open(_place(backend, request, tmp_path))
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
    """A store of each backend that lives outside this process, shareable across processes."""
    backend = BACKENDS[request.param]
    place = _place(backend, request, tmp_path)
    cp = backend.open(place)
    assert backend.url is not None
    opened = [cp]

    def reopen() -> BaseCheckpointer:
        opened.append(backend.open(place))
        return opened[-1]

    yield SharedStore(request.param, backend.url(place), cp, reopen)
    for each in opened:
        each.close()


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
