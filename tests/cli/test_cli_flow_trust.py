"""The store never chooses the code: ``resume`` / ``approve`` / ``reject`` load a flow only
from a reference a person gave (``--flow``, the project's ``pyproject.toml``,
``$PURPOSE_AGENT_FLOWS``, or the demo's own flow). A run's recorded reference only selects
among those; anything else is refused (exit 6) without importing a thing.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_stores import SQLITE_ONLY

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

if __name__ == "__main__":
    import sys

    print(flow.run({}, run_id=sys.argv[1]).status)
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


def tamper(db: Path | str, old: str, new: str) -> None:
    """Replace a recorded JSON string everywhere in the store, as someone with write
    access to it could."""
    rewrite(db, json.dumps(old), json.dumps(new))


def rewrite(db: Path | str, old: str, new: str) -> None:
    """Replace ``old`` with ``new`` in every text column of the store: the SQLite file's
    tables, or the PostgreSQL store's schema."""
    if isinstance(db, str):
        _rewrite_postgres(db, old, new)
        return
    conn = sqlite3.connect(db)
    with conn:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for column in conn.execute(f"PRAGMA table_info({table})").fetchall():
                if column[2].upper() == "TEXT":
                    conn.execute(f"UPDATE {table} SET {column[1]} = "
                                 f"replace({column[1]}, ?, ?)", (old, new))
    conn.close()


def _rewrite_postgres(url: str, old: str, new: str) -> None:
    import psycopg

    from purpose_agent.runtime.checkpoint._postgres_db import split_url

    conninfo, options = split_url(url)
    schema = options["schema"]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND data_type = 'text'", (schema,)).fetchall()
        with conn.transaction():
            for table, column in columns:  # names from the catalogue, not user input
                conn.execute(f'UPDATE "{schema}"."{table}" SET "{column}" = '
                             f'replace("{column}", %s, %s)', (old, new))


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
                             "not one of the flows allowed here", "trust",
                             f"--flow {evil}:flow", "[tool.purpose-agent] flows",
                             "$PURPOSE_AGENT_FLOWS")
            assert refused.stdout == ""
    assert not marker.exists(), "the store chose the code that ran"
    assert cli.ok("events", "s1", "--json").stdout == events
    assert state_of(cli, "s1")["status"] == "paused"


def test_a_recorded_file_is_only_compared_never_put_on_the_import_path(cli, project,
                                                                        tmp_path) -> None:
    """The run records ``okflow:flow`` and the file it came from; a store that points the
    file at another ``okflow.py`` gets that directory on no import path, and matches no
    allowed file."""
    start(cli, project.root, "s1")
    evil_dir = tmp_path / "x"
    evil_dir.mkdir()
    marker = evil_dir / "marker"
    (evil_dir / "okflow.py").write_text(EVIL_FLOW.format(marker=str(marker)), encoding="utf-8")
    tamper(cli.db, str(project.flow_file), str(evil_dir / "okflow.py"))
    assert state_of(cli, "s1")["flow_file"] == str(evil_dir / "okflow.py")

    by_module = at(cli, tmp_path / "elsewhere", PURPOSE_AGENT_FLOWS="okflow:flow")
    cli.assert_error(by_module("approve", "s1"), FLOW, "cannot import flow 'okflow:flow'",
                     "ModuleNotFoundError")
    by_file = at(cli, tmp_path / "elsewhere", PURPOSE_AGENT_FLOWS=f"{project.flow_file}:flow")
    cli.assert_error(by_file("approve", "s1"), FLOW, "not one of the flows allowed here",
                     f"{project.flow_file}:flow ($PURPOSE_AGENT_FLOWS)")
    assert not marker.exists()
    assert state_of(cli, "s1")["status"] == "paused"


def test_a_project_that_declares_its_flows_needs_no_flow_option(cli, project) -> None:
    (project.root / "pyproject.toml").write_text(
        '[project]\nname = "p"\n\n[tool.purpose-agent]\nflows = ["okflow:flow"]\n',
        encoding="utf-8")
    start(cli, project.root, "by-module")  # records okflow:flow and its file
    script = subprocess.run([sys.executable, str(project.flow_file), "as-script"],
                            cwd=project.root, env=cli.env, text=True, capture_output=True,
                            timeout=30)
    assert script.stdout.strip() == "paused", script.stderr
    assert state_of(cli, "as-script")["flow_ref"] == f"{project.flow_file}:flow"
    assert state_of(cli, "as-script")["flow_file"] is None

    in_project = at(cli, project.root)
    for run_id in ("by-module", "as-script"):
        first = in_project.ok("approve", run_id)
        assert f"⏸ run {run_id} is paused: node confirm" in first.stdout
        assert f"approve:  purpose-agent approve {run_id} --db {cli.db_arg}" in first.stdout
        assert "--flow" not in first.stdout
        assert f"✓ run {run_id} completed" in in_project.ok("reject", run_id).stdout
        assert state_of(cli, run_id)["data"] == {"first": True, "second": False}


def test_an_environment_variable_allows_flows_from_any_directory(cli, project,
                                                                  tmp_path) -> None:
    start(cli, project.root, "r")
    elsewhere = at(cli, tmp_path / "elsewhere",
                   PURPOSE_AGENT_FLOWS=f" some.other:flow ,{project.flow_file}:flow,")
    first = elsewhere.ok("approve", "r")
    assert "⏸ run r is paused: node confirm" in first.stdout and "--flow" not in first.stdout
    assert "✓ run r completed" in elsewhere.ok("approve", "r").stdout


def test_flow_on_the_command_line_and_hints_that_carry_it(cli, project, tmp_path) -> None:
    start(cli, project.root, "r")
    elsewhere = at(cli, tmp_path / "elsewhere")
    refused = elsewhere("approve", "r")
    # From another directory the module name means nothing: the file is what works.
    cli.assert_error(refused, FLOW, f"run 'r' records flow okflow:flow in {project.flow_file}",
                     f"purpose-agent approve r --flow {project.flow_file}:flow --db {cli.db_arg}")
    cli.assert_error(elsewhere("resume", "r", "--flow", f"{project.flow_file}:flow"), 1,
                     "waits for a person's answer", f"purpose-agent approve r --flow "
                     f"{project.flow_file}:flow --db {cli.db_arg}")
    first = elsewhere.ok("approve", "r", "--flow", f"{project.flow_file}:flow")
    assert f"resuming run r (paused) with flow {project.flow_file}:flow" in first.stdout
    hints = {line.split(":", 1)[0]: line.split(":", 1)[1].strip()
             for line in first.stdout.splitlines() if line.startswith(("approve:", "reject:"))}
    assert hints["reject"] == (f"purpose-agent reject r --flow {project.flow_file}:flow "
                               f"--db {cli.db_arg}")
    done = elsewhere.ok(*shlex.split(hints["approve"])[1:])  # the printed command works
    assert "✓ run r completed" in done.stdout

    # A flow given on the command line must be the one the run recorded, by name.
    start(cli, project.root, "s")
    other = tmp_path / "other.py"
    other.write_text("from purpose_agent import END, Flow\nflow = Flow('payroll')\n"
                     "flow.add(lambda ctx: None, name='ask')\nflow.edge('ask', END)\n",
                     encoding="utf-8")
    cli.assert_error(elsewhere("approve", "s", "--flow", f"{other}:flow"), FLOW,
                     "run 's' was started by flow 'okflow', not 'payroll'")
    assert state_of(cli, "s")["status"] == "paused"


def test_a_recorded_name_that_is_not_the_allowed_flows_is_refused(cli, project) -> None:
    (project.root / "pyproject.toml").write_text(
        '[tool.purpose-agent]\nflows = ["okflow:flow"]\n', encoding="utf-8")
    start(cli, project.root, "r")
    tamper(cli.db, "okflow", "payroll")  # the recorded name, not the reference
    assert state_of(cli, "r")["flow"] == "payroll"
    events = cli.ok("events", "r", "--json").stdout
    cli.assert_error(at(cli, project.root)("approve", "r"), FLOW,
                     "run 'r' was started by flow 'payroll', not 'okflow'")
    assert cli.ok("events", "r", "--json").stdout == events


def test_a_run_recorded_before_flow_files_still_resumes(cli, project) -> None:
    start(cli, project.root, "old")
    rewrite(cli.db, f'"flow_file":{json.dumps(str(project.flow_file))}', '"flow_file":null')
    assert state_of(cli, "old")["flow_file"] is None
    allowed = at(cli, project.root, PURPOSE_AGENT_FLOWS="okflow:flow")
    assert "⏸ run old is paused: node confirm" in allowed.ok("approve", "old").stdout


def test_a_directory_that_shadows_the_module_is_named(cli, project, tmp_path) -> None:
    start(cli, project.root, "r")
    shadowed = tmp_path / "shadowed"
    (shadowed / "okflow").mkdir(parents=True)  # e.g. a data directory
    runner = at(cli, shadowed, PURPOSE_AGENT_FLOWS="okflow:flow")
    cli.assert_error(runner("approve", "r"), FLOW,
                     f"okflow here is the directory {shadowed / 'okflow'} (a namespace "
                     f"package), which shadows the module okflow; the run was started from "
                     f"{project.flow_file}")
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "okflow.py").write_text("something_else = 1\n", encoding="utf-8")
    cli.assert_error(at(cli, other, PURPOSE_AGENT_FLOWS="okflow:flow")("approve", "r"), FLOW,
                     f"okflow here is {other / 'okflow.py'}, which has no attribute 'flow': "
                     f"it shadows the module okflow; the run was started from "
                     f"{project.flow_file}")


def test_a_malformed_allow_list_is_an_error_that_names_it(cli, project) -> None:
    start(cli, project.root, "r")
    pyproject = project.root / "pyproject.toml"
    pyproject.write_text('[tool.purpose-agent]\nflows = "okflow:flow"\n', encoding="utf-8")
    cli.assert_error(at(cli, project.root)("approve", "r"), FLOW, f"{pyproject}:",
                     "flows must be a list of strings")
    pyproject.write_text("[tool.purpose-agent\n", encoding="utf-8")
    cli.assert_error(at(cli, project.root)("approve", "r"), FLOW,
                     f"cannot read the flows declared in {pyproject}")
    pyproject.unlink()
    cli.assert_error(at(cli, project.root, PURPOSE_AGENT_FLOWS="okflow")("approve", "r"), FLOW,
                     "flow reference 'okflow' (from $PURPOSE_AGENT_FLOWS) must look like")
    assert state_of(cli, "r")["status"] == "paused"
    # A flow given on the command line does not depend on the declarations.
    given = at(cli, project.root, PURPOSE_AGENT_FLOWS="okflow").ok(
        "approve", "r", "--flow", "okflow.py:flow")
    assert "approve:  purpose-agent approve r --flow okflow.py:flow" in given.stdout


def test_runs_record_the_file_of_their_flow(cli, project) -> None:
    start(cli, project.root, "mod")
    assert state_of(cli, "mod")["flow_file"] == str(project.flow_file)
    cli.ok("demo", "--run-id", "demo")
    demo = state_of(cli, "demo")
    assert demo["flow_ref"] == "purpose_agent.cli.demo_flow:flow"
    assert demo["flow_file"].endswith("purpose_agent/cli/demo_flow.py")


@SQLITE_ONLY  # a memory:// store, given by --db
def test_a_demo_in_memory_says_its_run_is_gone_instead_of_printing_hints(cli) -> None:
    paused = cli.ok("demo", "--db", "memory://", "--run-id", "m")
    assert "⏸ run m is paused: node approve waits for a person's answer" in paused.stdout
    assert "purpose-agent approve" not in paused.stdout
    assert "purpose-agent reject" not in paused.stdout
    assert ("this run lives in memory://, which ends with this process: no later command "
            "can approve, reject or resume it") in paused.stdout


def test_a_fork_prints_the_resume_command_that_works_here(cli, project, tmp_path) -> None:
    start(cli, project.root, "r")
    elsewhere = at(cli, tmp_path / "elsewhere")
    forked = elsewhere.ok("fork", "r", "--at", "0", "--id", "copy")
    hint, note = forked.stdout.split("advance it: ", 1)[1].strip().split(" (", 1)
    assert hint == f"purpose-agent resume copy --flow {project.flow_file}:flow --db {cli.db_arg}"
    assert note.startswith("if you trust that code")
    assert "⏸ run copy is paused: node ask" in elsewhere.ok(*shlex.split(hint)[1:]).stdout
    declared = at(cli, project.root, PURPOSE_AGENT_FLOWS="okflow:flow")
    again = declared.ok("fork", "r", "--at", "0", "--id", "copy2").stdout
    assert f"advance it: purpose-agent resume copy2 --db {cli.db_arg}" in again


def test_a_run_whose_flow_has_no_reference_needs_the_flow_option(cli, project) -> None:
    (project.root / "built.py").write_text(textwrap.dedent('''
        from purpose_agent import END, Flow

        def build():
            flow = Flow("built")
            flow.add(lambda ctx: {"answer": ctx.interrupt("ok?")}, name="ask")
            flow.edge("ask", END)
            return flow
        '''), encoding="utf-8")
    start(cli, project.root, "b", "from built import build; flow = build()")
    assert state_of(cli, "b")["flow_ref"] is None
    runner = at(cli, project.root)
    cli.assert_error(runner("approve", "b"), FLOW,
                     "run 'b' (named 'built') records no reference to its flow",
                     f"purpose-agent approve b --flow package.module:attr --db {cli.db_arg}")
    (project.root / "named.py").write_text("from built import build\nflow = build()\n",
                                           encoding="utf-8")
    assert "✓ run b completed" in runner.ok("approve", "b", "--flow", "named:flow").stdout
