"""Every error is one ``error: ...`` line on stderr and a documented exit code; never a
traceback, and nothing stored is changed by a refused command."""

from __future__ import annotations

import json
import sqlite3

from cli_stores import SQLITE_ONLY

NOT_FOUND, USAGE, BUSY, STORE, FLOW = 3, 2, 4, 5, 6
COMMANDS = ("demo", "runs", "show", "events", "transcript", "resume", "approve", "reject",
            "cancel", "fork", "delete")


@SQLITE_ONLY  # help text: no store is opened
def test_the_help_lists_every_command_and_the_exit_codes(cli) -> None:
    top, *helps = cli.many(["--help"], ["demo", "--help"], ["resume", "--help"])
    assert top.returncode == 0 and "Exit codes:" in top.stdout
    for code in ("0  ok", "1  error", "2  bad usage", "3  no such run", "4  the run is busy",
                 "5  the store cannot", "6  the flow cannot"):
        assert f"  {code}" in top.stdout
    for command in COMMANDS:
        assert f"  {command} " in top.stdout
    for command, result in zip(("demo", "resume"), helps, strict=True):
        assert result.returncode == 0 and f"Usage: purpose-agent {command}" in result.stdout
        assert "--db URL" in result.stdout
    assert cli.ok().stdout == top.stdout  # no arguments: the help


def test_an_unknown_run_id(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "known")  # a store exists, without that run
    commands = [["show", "nope"], ["events", "nope", "--follow"], ["resume", "nope"],
                ["approve", "nope"], ["fork", "nope", "--at", "1"]]
    for args, result in zip(commands, cli.many(*commands), strict=True):
        assert result.returncode == NOT_FOUND, args
        cli.assert_error(result, NOT_FOUND, "no run 'nope' in", str(cli.db))


@SQLITE_ONLY  # a SQLite file not created (a PostgreSQL store is a schema that exists)
def test_an_unknown_run_id_without_any_store_creates_none(cli) -> None:
    for args in (["show", "nope"], ["runs", "--json"], ["resume", "nope"], ["cancel", "nope"]):
        cli.assert_error(cli(*args), STORE, f"no store at {cli.db}")
    assert not cli.db.parent.exists()


@SQLITE_ONLY  # usage errors, refused before a store is opened
def test_an_invalid_run_id_and_bad_options_are_usage_errors(cli) -> None:
    invalid, bogus, status, crash_at, no_at = cli.many(
        ["show", "../etc"], ["runs", "--bogus"], ["runs", "--status", "sleeping"],
        ["demo", "--crash-at", "nowhere"], ["fork", "x"])
    cli.assert_error(invalid, USAGE, "run id '../etc' is not allowed")
    cli.assert_error(bogus, USAGE, "--bogus")
    cli.assert_error(status, USAGE, "--status")
    cli.assert_error(crash_at, USAGE, "not a node of the demo")
    cli.assert_error(no_at, USAGE, "--at")


@SQLITE_ONLY  # edits the SQLite file's meta table (PostgreSQL: tests/runtime/test_postgres.py)
def test_a_database_from_a_newer_version_is_refused(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "old")
    with sqlite3.connect(cli.db) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    for result in cli.many(["runs"], ["demo", "--yes"]):
        cli.assert_error(result, STORE, "newer purpose-agent", "schema 99")


@SQLITE_ONLY  # a file that is not a SQLite database
def test_a_file_that_is_not_a_database(cli) -> None:
    cli.db.parent.mkdir(parents=True)
    cli.db.write_bytes(b"these are not the bytes you are looking for\n" * 100)
    for result in cli.many(["runs"], ["show", "x"]):
        cli.assert_error(result, STORE, "not a database")
    cli.assert_error(cli("runs", "--db", "ftp://x/y"), STORE, "cannot tell which store")
    assert cli.db.read_bytes().startswith(b"these are not")


def test_a_flow_that_cannot_be_imported(cli) -> None:
    (cli.cwd / "broken.py").write_text("1 / 0\n", encoding="utf-8")
    (cli.cwd / "other.py").write_text(
        "from purpose_agent import END, Flow\nflow = Flow('other')\n"
        "flow.add(lambda ctx: None, name='a')\nflow.edge('a', END)\n", encoding="utf-8")
    cli.ok("demo", "--run-id", "r")
    cases = {
        "no_such_module_xyz:flow": "ModuleNotFoundError",
        "purpose_agent.cli.demo_flow:INCIDENT": "is a dict, not a Flow",
        "just-a-name": "must look like",
        "broken.py:flow": "ZeroDivisionError",
        "other:flow": "was started by flow 'incident-triage', not 'other'",
    }
    results = cli.many(*[["resume", "r", "--answer", "true", "--flow", ref] for ref in cases])
    for needle, result in zip(cases.values(), results, strict=True):
        cli.assert_error(result, FLOW, needle)
    assert json.loads(cli.ok("show", "r", "--json").stdout)["status"] == "paused"


def test_bad_json_in_answer_or_set(cli) -> None:
    cli.ok("demo", "--run-id", "r")
    cases = {
        ("approve", "r", "--answer", "{not json"): "--answer is not valid JSON",
        ("resume", "r", "--answer", "yes"): "--answer is not valid JSON",
        ("resume", "r", "--answer", "true", "--set", "draft"): "--set expects key=JSON",
        ("resume", "r", "--answer", "true", "--set", "draft={oops"): "--set draft is not valid",
    }
    for needle, result in zip(cases.values(), cli.many(*map(list, cases)), strict=True):
        cli.assert_error(result, USAGE, needle)
    assert json.loads(cli.ok("show", "r", "--json").stdout)["status"] == "paused"


def test_a_run_that_waits_for_an_answer_is_not_resumed_without_one(cli) -> None:
    cli.ok("demo", "--run-id", "r")
    cli.assert_error(cli("resume", "r"), 1, "waits for a person's answer",
                     "purpose-agent approve r")


def _tamper(cli, sql: str) -> None:
    with sqlite3.connect(cli.db) as db:
        assert db.execute(sql).rowcount == 1, sql
    db.close()


ROW = "(SELECT (num << 32) + {} FROM runs WHERE run_id = 'd')"


@SQLITE_ONLY  # damages rows of the SQLite file and names them as SQLite does
def test_a_tampered_store_is_a_store_error_naming_the_run_and_the_row(cli) -> None:
    """Damaged rows exit 5 with one line naming where, never "unexpected … (a bug)"."""
    cli.ok("demo", "--yes", "--run-id", "d")
    place = f"SQLite store {str(cli.db)!r}, run 'd'"
    _tamper(cli, f"UPDATE journal SET events = 'not json' WHERE id = {ROW.format(2)}")
    cli.assert_error(cli("events", "d"), STORE, f"{place}, journal row 2", "is not JSON")
    _tamper(cli, f"DELETE FROM journal WHERE id = {ROW.format(3)}")  # version 2's commit
    cli.assert_error(cli("show", "d"), STORE, f"{place}, journal row 6",
                     "state version 3 follows version 1: version 2 is missing")
    _tamper(cli, "UPDATE runs SET header = '{\"run_id\": \"d\"}'")
    cli.assert_error(cli("show", "d", "--json"), STORE, f"{place}, its row in the runs table",
                     "no 'status'")
    _tamper(cli, "UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    cli.assert_error(cli("runs"), STORE, "schema_version 'abc'")


@SQLITE_ONLY  # a JSONL store, given by --db
def test_a_damaged_jsonl_line_is_a_store_error_naming_the_file_and_line(cli) -> None:
    store = cli.cwd / "journals"
    cli.ok("demo", "--yes", "--run-id", "j", "--db", f"jsonl:///{store}")
    journal = store / "j.jsonl"
    lines = journal.read_bytes().split(b"\n")
    lines[1] = b"{}"
    journal.write_bytes(b"\n".join(lines))
    for command in ("show", "events"):
        cli.assert_error(cli(command, "j", "--db", f"jsonl:///{store}"), STORE,
                         f"{journal}, line 2", "not a journal record")
