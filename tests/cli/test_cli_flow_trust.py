"""The store never chooses the code: ``resume`` / ``approve`` / ``reject`` load a flow only
from a reference a person gave (``--flow``, the project's ``pyproject.toml``,
``$PURPOSE_AGENT_FLOWS``, or the demo's own flow). A run's recorded reference only selects
among those; anything else is refused (exit 6) without importing a thing.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOW = 6

ASKING_FLOW = '''
from purpose_agent import END, Flow

flow = Flow("okflow", purpose="asks a person twice")


@flow.node
def ask(ctx):
    return {"first": ctx.interrupt({"question": "first?"})}


@flow.node
def confirm(ctx):
    return {"second": ctx.interrupt({"question": "second?"})}


flow.edge("ask", "confirm").edge("confirm", END)
'''

# What an attacker with write access to the store wants the next person to run: the same
# flow name and nodes (so nothing else gives it away), plus a side effect at import.
EVIL_FLOW = '''
from pathlib import Path

Path({marker!r}).write_text("this code ran", encoding="utf-8")

from purpose_agent import END, Flow

flow = Flow("okflow")


@flow.node
def ask(ctx):
    Path({marker!r}).write_text("this code ran", encoding="utf-8")


@flow.node
def confirm(ctx):
    Path({marker!r}).write_text("this code ran", encoding="utf-8")


flow.edge("ask", "confirm").edge("confirm", END)
'''


@dataclasses.dataclass
class Project:
    root: Path
    flow_file: Path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    root.mkdir()
    flow_file = root / "okflow.py"
    flow_file.write_text(textwrap.dedent(ASKING_FLOW), encoding="utf-8")
    return Project(root, flow_file)


def start(cli, cwd: Path, run_id: str, statement: str = "from okflow import flow") -> None:
    """Start a run of the project's flow the way a user's script does, from ``cwd``; it
    pauses at its first question."""
    code = f"import sys\n{statement}\nprint(flow.run({{}}, run_id=sys.argv[1]).status)"
    result = subprocess.run([sys.executable, "-c", code, run_id], cwd=cwd, env=cli.env,
                            text=True, capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout.strip() == "paused", result.stderr


def at(cli, cwd: Path, **env: str):
    """The same command line, run from another directory (with more environment)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(cli, cwd=cwd, env={**cli.env, **env})


def tamper(db: Path, old: str, new: str) -> None:
    """Replace a recorded JSON string everywhere in the SQLite file, as someone with write
    access to the store could."""
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for column in conn.execute(f"PRAGMA table_info({table})"):
                if column[2].upper() == "TEXT":
                    conn.execute(f"UPDATE {table} SET {column[1]} = "
                                 f"replace({column[1]}, ?, ?)",
                                 (json.dumps(old), json.dumps(new)))
    conn.close()


def state_of(cli, run_id: str) -> dict:
    return json.loads(cli.ok("show", run_id, "--json").stdout)


def test_a_tampered_store_cannot_choose_the_code_that_runs(cli, project, tmp_path) -> None:
    start(cli, project.root, "s1")
    assert state_of(cli, "s1")["flow_ref"] == "okflow:flow"
    evil_dir = tmp_path / "x"
    evil_dir.mkdir()
    marker = evil_dir / "marker"
    evil = evil_dir / "evil.py"
    evil.write_text(EVIL_FLOW.format(marker=str(marker)), encoding="utf-8")
    tamper(cli.db, "okflow:flow", f"{evil}:flow")
    assert state_of(cli, "s1")["flow_ref"] == f"{evil}:flow"
    events = cli.ok("events", "s1", "--json").stdout

    (project.root / "pyproject.toml").write_text(
        '[tool.purpose-agent]\nflows = ["okflow:flow"]\n', encoding="utf-8")
    someone_else = at(cli, tmp_path / "elsewhere")
    in_the_project = at(cli, project.root, PURPOSE_AGENT_FLOWS="okflow:flow")
    for runner in (someone_else, in_the_project):
        for command in (["approve", "s1"], ["reject", "s1"], ["resume", "s1", "--answer", "1"]):
            refused = runner(*command, "--db", str(cli.db))
            cli.assert_error(refused, FLOW, f"run 's1' records flow {evil}:flow",
                             "not among the flows allowed here", "trust",
                             f"--flow {evil}:flow", "[tool.purpose-agent] flows",
                             "$PURPOSE_AGENT_FLOWS")
            assert refused.stdout == ""
    assert not marker.exists(), "the store chose the code that ran"
    assert cli.ok("events", "s1", "--json").stdout == events
    assert state_of(cli, "s1")["status"] == "paused"
