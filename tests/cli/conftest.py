"""Fixtures for the command-line suite: the ``purpose-agent`` command in a temporary
directory whose store is ``$PURPOSE_AGENT_DB`` — the installed script in a new process,
or, for a command that only reads the store, its entry point in this one (READERS)."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import pytest

# The script next to this interpreter first (a version manager's shim may start another
# Python), then whatever PATH finds.
SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))


@dataclass
class Cli:
    """Runs ``purpose-agent`` in ``cwd`` with the store at ``db``."""

    cwd: Path
    db: Path | str  # a SQLite file, or a PostgreSQL URL
    env: dict[str, str]
    effects_log: Path  # where the demo appends its side effects (next to a SQLite file)
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def db_arg(self) -> str:
        """The store as the CLI's printed commands give it (quoted for a shell: a
        PostgreSQL URL has ``&`` and ``?``)."""
        return shlex.quote(str(self.db))

    def __call__(self, *args: str, stdin: str | None = None,
                 timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        if _only_reads(args):
            return self.in_process(*args, stdin=stdin)
        return self.spawn(*args, stdin=stdin, timeout=timeout)

    def spawn(self, *args: str, stdin: str | None = None,
              timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the installed script in a new process."""
        assert SCRIPT, "the purpose-agent script is not installed: pip install -e '.[cli]'"
        return subprocess.run(
            [SCRIPT, *args], cwd=self.cwd, env=self.env, text=True, capture_output=True,
            input=stdin if stdin is not None else "", timeout=timeout,
        )

    def in_process(self, *args: str, stdin: str | None = None
                   ) -> subprocess.CompletedProcess[str]:
        """Run the script's entry point (``purpose_agent.cli.main``) in this process, in
        ``cwd`` with ``env`` as its whole environment and stdin/stdout/stderr its own,
        restoring all four after; the result as ``subprocess.run`` gives it."""
        from purpose_agent.cli import main

        out, err = io.StringIO(), io.StringIO()
        with _environment(self.env), contextlib.chdir(self.cwd), \
                _streams(io.StringIO(stdin or ""), out, err):
            code = main(list(args))
        return subprocess.CompletedProcess([SCRIPT or "purpose-agent", *args], code,
                                           out.getvalue(), err.getvalue())

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a command without waiting for it (stopped at the end of the test)."""
        assert SCRIPT
        process = subprocess.Popen([SCRIPT, *args], cwd=self.cwd, env=self.env, text=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        self.started.append(process)
        return process

    def many(self, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands side by side, each in its own process."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self.spawn(*args), commands))

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run and require exit code 0 (showing the output when not)."""
        result = self(*args)
        assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    @staticmethod
    def assert_error(result: subprocess.CompletedProcess[str], code: int,
                     *needles: str) -> None:
        """The command failed with ``code`` and one ``error: ...`` line on stderr."""
        assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])

    def effects(self, run_id: str) -> list[str]:
        """The demo's effects log lines of one run."""
        log = self.effects_log
        lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return [line.split(" ", 1)[1] for line in lines if line.startswith(f"{run_id} ")]


# Commands that only read the store and import no flow code run in the test's own
# process: starting an interpreter and importing the CLI costs ~0.8 CPU-s a command, and
# the suite runs hundreds of them. Whatever touches a process stays a real one: commands
# that run or load flows (their imports and sys.path changes would outlive the test),
# follow a live run, print help (typer sizes it to the terminal), and everything through
# ``spawn``, ``many`` and ``popen``; the closed-stdout, signal and README tests run the
# installed script themselves.
READERS = frozenset({"runs", "show", "transcript", "events", "workers"})


def _only_reads(args: tuple[str, ...]) -> bool:
    if not args or args[0] not in READERS:
        return False
    process_bound = {"--help", "-h"} | ({"--follow", "-f"} if args[0] == "events" else set())
    return not process_bound.intersection(args)


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is ``env`` (and only that) inside; as before after. Keys are
    changed one by one, never cleared, for threads of this process that read it."""
    saved = dict(os.environ)

    def become(target: dict[str, str]) -> None:
        for key in [k for k in os.environ if k not in target]:
            del os.environ[key]
        for key, value in target.items():
            if os.environ.get(key) != value:
                os.environ[key] = value

    become(env)
    try:
        yield
    finally:
        become(saved)


@contextlib.contextmanager
def _streams(stdin: TextIO, stdout: TextIO, stderr: TextIO) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """The command line on a SQLite file, and again on the session's PostgreSQL server
    (tests/conftest.py: skipped with the reason on a developer's machine without one,
    required in CI). A test about SQLite files alone says so with ``@SQLITE_ONLY``
    (cli_stores.py) and why."""
    env = {k: v for k, v in os.environ.items() if k not in ("PURPOSE_AGENT_DEBUG", "COLUMNS")}
    db: Path | str
    if request.param == "postgres":  # the session's PostgreSQL server (tests/conftest.py)
        db = request.getfixturevalue("pg_url")
        effects_log = tmp_path / ".purpose_agent" / "demo-effects.log"
    else:
        db = tmp_path / "store" / "runs.db"
        effects_log = db.parent / "demo-effects.log"
    env["PURPOSE_AGENT_DB"] = str(db)
    runner = Cli(cwd=tmp_path, db=db, env=env, effects_log=effects_log)
    yield runner
    for process in runner.started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


BLOCKING_FLOW = '''
import sys

from purpose_agent import END, Flow

flow = Flow("blocking", purpose="waits for a line on stdin inside its first node")


@flow.node
def wait(ctx):
    print("inside wait", flush=True)
    sys.stdin.readline()
    return {"released": True}


@flow.node
def after(ctx):
    return {"done": True}


flow.edge("wait", "after").edge("after", END)

if __name__ == "__main__":
    print(flow.run({}, run_id=sys.argv[1]).status, flush=True)
'''


@pytest.fixture
def live_run(cli: Cli) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start a run in another process that stays inside its first node until released
    (a line on its stdin). Waits, through the child's stdout, until it is in the node."""
    script = cli.cwd / "blocking_flow.py"
    script.write_text(textwrap.dedent(BLOCKING_FLOW), encoding="utf-8")
    children: list[subprocess.Popen[str]] = []

    def start(run_id: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, str(script), run_id], cwd=cli.cwd, env=cli.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "inside wait"
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(10)
