"""A run that another live process is advancing: resume and delete refuse it, cancel
asks it to stop, ``events --follow`` tails it until it ends."""

from __future__ import annotations

import json

BUSY = 4


def test_resume_of_a_run_live_elsewhere_is_refused_and_writes_nothing(cli, live_run) -> None:
    child = live_run("live")
    before = json.loads(cli.ok("events", "live", "--json").stdout)
    busy = cli("resume", "live", "--flow", "blocking_flow.py:flow")
    cli.assert_error(busy, BUSY, "run busy", "run 'live' is being advanced by")
    cli.assert_error(cli("delete", "live", "--yes"), 1, "is being advanced by")
    assert json.loads(cli.ok("events", "live", "--json").stdout) == before
    show = cli.ok("show", "live").stdout
    assert "running" in show and "(live" in show

    child.stdin.write("go\n")
    child.stdin.close()
    assert child.stdout.readline().strip() == "completed"
    assert child.wait(10) == 0
    assert json.loads(cli.ok("show", "live", "--json").stdout)["status"] == "completed"


def test_events_follow_tails_a_live_run_until_it_ends(cli, live_run) -> None:
    child = live_run("tailed")
    follow = cli.popen("events", "tailed", "--follow", "--json")
    first = json.loads(follow.stdout.readline())  # following while the node is blocked
    assert (first["seq"], first["kind"]) == (1, "run.started")
    assert follow.poll() is None

    child.stdin.write("go\n")
    child.stdin.close()
    assert child.wait(10) == 0
    rest, err = follow.communicate(timeout=20)
    assert follow.returncode == 0, err
    kinds = [json.loads(line)["kind"] for line in rest.splitlines()]
    assert kinds[-1] == "run.finished" and "node.completed" in kinds
    assert len(kinds) + 1 == len(json.loads(cli.ok("events", "tailed", "--json").stdout))


def test_cancel_of_a_live_run_stops_it_at_its_next_node(cli, live_run) -> None:
    child = live_run("stopme")
    asked = cli.ok("cancel", "stopme")
    assert "cancel requested" in asked.stdout
    child.stdin.write("go\n")
    child.stdin.close()
    assert child.stdout.readline().strip() == "cancelled"
    assert child.wait(10) == 0
    state = json.loads(cli.ok("show", "stopme", "--json").stdout)
    assert state["status"] == "cancelled" and state["completed_nodes"] == ["wait"]
