"""What the command prints: hints that work as typed, event kinds checked, one event
format whether following or not, a closed stdout ending quietly, ``--version``."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_stores import SQLITE_ONLY

from purpose_agent import __version__
from purpose_agent.cli.common import CliError, parse_json, parse_sets
from purpose_agent.runtime.checkpoint import parse_store_url
from purpose_agent.runtime.events import EventKind

SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))


def _examples(message: str) -> list[list[str]]:
    """The example arguments an error message suggests, each split as a shell would."""
    listed = message.split("e.g. ", 1)[1]
    return [shlex.split(example) for example in listed.split(", ")]


def test_the_set_and_answer_examples_in_errors_work_as_typed() -> None:
    with pytest.raises(CliError) as bad_set:
        parse_sets(["draft={oops"])
    examples = _examples(str(bad_set.value))
    assert len(examples) == 3
    for args in examples:
        assert args[0] == "--set" and len(args) == 2, args
        assert set(parse_sets(args[1:]) or {}) == {"draft"}
    assert parse_sets([examples[0][1]]) == {"draft": "yes"}
    with pytest.raises(CliError) as bad_answer:
        parse_json("--answer", "yes")
    for args in _examples(str(bad_answer.value)):
        assert args[0] == "--answer" and len(args) == 2, args
        parse_json("--answer", args[1])


def test_the_suggested_set_really_works_on_the_command_line(cli) -> None:
    cli.ok("demo", "--run-id", "r")
    refused = cli("resume", "r", "--answer", "true", "--set", "draft=not quoted")
    cli.assert_error(refused, 2, "--set draft is not valid JSON")
    suggestion = _examples(refused.stderr.strip())[0]
    cli.ok("resume", "r", "--answer", "true", *suggestion)
    assert json.loads(cli.ok("show", "r", "--json").stdout)["data"]["draft"] == "yes"


def test_an_unknown_event_kind_is_refused_with_the_valid_ones(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "r")
    for args in (["events", "r", "--kind", "step.star"],
                 ["events", "r", "--kind", "step.started", "--kind", "stepstarted", "--follow"]):
        result = cli(*args)
        cli.assert_error(result, 2, "unknown event kind", "step.completed", "run.error")
    assert "step.started" in cli("events", "r", "--kind", "step.sta").stderr.split("kinds are")[1]
    help_text = " ".join(cli.ok("events", "--help").stdout.split())
    for kind in EventKind:
        assert str(kind) in help_text
    assert cli.ok("events", "r", "--kind", "step.started").stdout.count("step.started") >= 3
    # The kind an earlier release called it still selects the same events.
    assert cli.ok("events", "r", "--kind", "tool.call").stdout.count("step.started") >= 3


def test_following_prints_the_same_table_as_listing(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "r")
    listed, followed = cli.many(["events", "r"], ["events", "r", "--follow"])
    assert listed.returncode == followed.returncode == 0
    assert followed.stdout == listed.stdout
    header = listed.stdout.splitlines()[0].split()
    assert header[:9] == ["seq", "┃", "time", "┃", "kind", "┃", "node", "┃", "payload"]
    as_json = json.loads(cli.ok("events", "r", "--json").stdout)
    lines = cli.ok("events", "r", "--json", "--follow").stdout.splitlines()
    assert [json.loads(line) for line in lines] == as_json, "one JSON object per line"


def _with_closed_stdout(cli, *args: str) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone: every write fails (EPIPE)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([SCRIPT, *args], cwd=cli.cwd, env=cli.env, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)


def test_a_closed_stdout_ends_every_command_quietly(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "r")
    for args in (["runs"], ["runs", "--json"], ["show", "r"], ["show", "r", "--json"],
                 ["events", "r"], ["events", "r", "--json"], ["events", "r", "--follow"],
                 ["events", "r", "--follow", "--json"], ["transcript", "r"], ["--help"],
                 ["--version"], ["demo", "--yes", "--run-id", "r2"]):
        result = _with_closed_stdout(cli, *args)
        assert (result.returncode, result.stderr) == (0, ""), args


def test_following_a_live_run_into_head_ends_quietly_when_head_exits(cli, live_run) -> None:
    child = live_run("live")
    follower = subprocess.Popen([SCRIPT, "events", "live", "--follow"], cwd=cli.cwd,
                                env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    assert follower.stdout is not None and follower.stderr is not None
    assert "seq" in follower.stdout.readline()  # `| head -1`: one line read, then gone
    follower.stdout.close()
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(30) == 0
    assert follower.wait(30) == 0
    assert follower.stderr.read() == ""


@SQLITE_ONLY  # no store is opened
def test_version(cli) -> None:
    for flag in ("--version", "-V"):
        out = cli.ok(flag).stdout
        assert re.fullmatch(r"purpose-agent \S+\n", out) and __version__ in out


def test_the_store_url_forms_are_documented_and_mean_the_same_on_the_command_line(cli):
    help_text = " ".join(cli.ok("runs", "--help").stdout.split())
    for form in ("sqlite:///path.db", "relative to the working directory",
                 "sqlite:////abs/path.db", "(absolute)", "sqlite:///:memory:", "jsonl:///dir",
                 "jsonl:////abs/dir", "memory://"):
        assert form in help_text, form
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Storage", 1)[1].split("```python", 1)[0]
    for url, store in re.findall(r"^\| `([^`]+)`[^|]*\| `(\w+)`", table, re.M):
        kind = {"SQLiteCheckpointer": "sqlite", "JSONLCheckpointer": "jsonl",
                "InMemoryCheckpointer": "memory", "PostgresCheckpointer": "postgresql"}[store]
        assert parse_store_url(url).kind == kind, url
    cli.ok("demo", "--yes", "--run-id", "rel", "--db", "sqlite:///here/runs.db")
    assert (cli.cwd / "here" / "runs.db").is_file()
    absolute = f"sqlite:///{cli.cwd / 'abs.db'}"
    cli.ok("demo", "--yes", "--run-id", "abs", "--db", absolute)
    assert (cli.cwd / "abs.db").is_file()
    for url, run_id in (("sqlite:///here/runs.db", "rel"), ("here/runs.db", "rel"),
                        (absolute, "abs")):
        listed = json.loads(cli.ok("runs", "--json", "--db", url).stdout)
        assert [row["run_id"] for row in listed] == [run_id], url
