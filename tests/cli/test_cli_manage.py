"""Managing runs: fork (time travel), cancel, delete, in-doubt steps, other stores."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap

from cli_stores import SQLITE_ONLY

IN_DOUBT_FLOW = '''
import os
import signal
import sys

from purpose_agent import END, Flow, step

flow = Flow("payments", purpose="charge a card at most once")


@step(at_most_once=True)
def charge(amount):
    if os.environ.get("DIE_INSIDE_CHARGE"):
        os.kill(os.getpid(), signal.SIGKILL)  # the card may or may not have been charged
    return {"charged": amount}


@flow.node
def pay(ctx):
    return {"receipt": charge(42)}


flow.edge("pay", END)

if __name__ == "__main__":
    flow.run({}, run_id=sys.argv[1])
'''


def test_fork_a_run_and_resume_the_copy_with_an_edit(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "orig")
    forked = cli.ok("fork", "orig", "--at", "3", "--id", "copy", "--set",
                    'draft="Fixed, sorry."')
    assert ("forked run orig after node execution 3 into copy (pending, next node approve)"
            in forked.stdout)
    assert shlex.join(["purpose-agent", "resume", "copy", "--db", str(cli.db)]) in forked.stdout
    paused = cli.ok("resume", "copy")
    assert "⏸ run copy is paused" in paused.stdout and '"draft": "Fixed, sorry."' in paused.stdout
    cli.ok("approve", "copy")
    assert cli.effects("copy") == ["send: emailed ACME Corp (13 chars)"]
    too_far = cli("fork", "orig", "--at", "99")
    assert too_far.returncode == 1 and "has no node execution 99" in too_far.stderr
    del cli.env["PURPOSE_AGENT_DB"]  # the store named by --db alone
    state = json.loads(cli.ok("show", "copy", "--json", "--db", str(cli.db)).stdout)
    assert state["status"] == "completed" and state["parent"] == {"run_id": "orig", "step": 3}


def test_cancel_then_delete_a_paused_run(cli) -> None:
    cli.ok("demo", "--run-id", "gone")
    assert "run gone is cancelled" in cli.ok("cancel", "gone").stdout
    assert json.loads(cli.ok("runs", "--status", "cancelled", "--json").stdout)[0]["run_id"] \
        == "gone"
    cli.assert_error(cli("approve", "gone"), 1, "is cancelled")
    cli.assert_error(cli("delete", "gone"), 2, "without --yes")  # no terminal to ask on
    assert "deleted run gone" in cli.ok("delete", "gone", "--yes").stdout
    cli.assert_error(cli("show", "gone"), 3, "no run 'gone'")


def test_an_in_doubt_step_is_settled_by_a_person(cli) -> None:
    script = cli.cwd / "payments.py"
    script.write_text(textwrap.dedent(IN_DOUBT_FLOW), encoding="utf-8")
    for run_id in ("settle", "retry"):
        died = subprocess.run([sys.executable, str(script), run_id], cwd=cli.cwd,
                              env={**cli.env, "DIE_INSIDE_CHARGE": "1"}, timeout=30)
        assert died.returncode == -9
        # The flow ran as a script: a later command is given it (the store never chooses
        # the code), and the commands printed say so.
        paused = cli.ok("resume", run_id, "--flow", "payments.py:flow")
        assert "step charge in node pay is in doubt" in paused.stdout
        assert (f"purpose-agent resume {run_id} --retry-in-doubt --flow payments.py:flow "
                f"--db {cli.db_arg}") in paused.stdout
        assert "paused (in doubt)" in cli.ok("runs").stdout
        cli.assert_error(cli("approve", run_id), 1, "in-doubt step")

    cli.ok("resume", "settle", "--answer", '{"charged": 42, "checked": "by hand"}',
           "--flow", "payments.py:flow")
    settled = json.loads(cli.ok("show", "settle", "--json").stdout)
    assert settled["data"]["receipt"] == {"charged": 42, "checked": "by hand"}
    cli.ok("resume", "retry", "--retry-in-doubt", "--flow", "payments.py:flow")
    assert json.loads(cli.ok("show", "retry", "--json").stdout)["data"]["receipt"] == {
        "charged": 42}


@SQLITE_ONLY  # a JSONL store, given by --db, and a SQLite file that must not be created
def test_a_jsonl_store(cli, tmp_path) -> None:
    url = f"jsonl:///{tmp_path}/journal"
    cli.ok("demo", "--yes", "--run-id", "j", "--db", url)
    assert [r["run_id"] for r in json.loads(cli.ok("runs", "--json", "--db", url).stdout)] \
        == ["j"]
    assert "run finished" in cli.ok("transcript", "j", "--db", url).stdout
    assert (tmp_path / "journal" / "demo-effects.log").exists()
    # $PURPOSE_AGENT_DB is elsewhere, and holds no store
    cli.assert_error(cli("runs", "--json"), 5, f"no store at {cli.db}")
