"""The stories a newcomer lives through with ``purpose-agent demo``: a run to the end,
a crash in the middle and its resume, and a pause for a person's approval."""

from __future__ import annotations

import json
import shlex
import signal

DEMO_EFFECTS = [
    "fetch_logs: queried the log store for payments-api",
    "classify: model call assessed SEV-1, dependency outage",
    "classify: paged dana@payments (SEV-1)",
    "draft_reply: model call drafted the reply",
    "send: emailed ACME Corp (187 chars)",
]


def test_newcomer_runs_the_demo_and_inspects_it(cli) -> None:
    demo = cli.ok("demo", "--yes", "--run-id", "first")
    for node in ("fetch_logs", "classify", "draft_reply", "approve", "send"):
        assert f"▶ {node}" in demo.stdout and f"✓ {node}" in demo.stdout
    assert "✓ run first completed after 5 node(s)" in demo.stdout
    assert cli.effects("first") == DEMO_EFFECTS

    runs = cli.ok("runs")
    assert "first" in runs.stdout and "incident-triage" in runs.stdout
    assert "completed" in runs.stdout and "ago" in runs.stdout
    rows = json.loads(cli.ok("runs", "--json").stdout)
    assert [(r["run_id"], r["status"], r["executions"], r["steps"]) for r in rows] == [
        ("first", "completed", 5, 5)]

    show = cli.ok("show", "first")
    assert "completed" in show.stdout
    assert "fetch_logs → classify → draft_reply → approve → send" in show.stdout
    assert '"approved": true' in show.stdout
    state = json.loads(cli.ok("show", "first", "--json").stdout)
    assert state["status"] == "completed" and state["data"]["sent"]["status"] == "sent"
    assert state["flow_ref"] == "purpose_agent.cli.demo_flow:flow"

    transcript = cli.ok("transcript", "first").stdout
    assert transcript.startswith("#1    run started: flow incident-triage")
    assert "! a person answered: true" in transcript
    assert transcript.rstrip().endswith("run finished after 5 node(s)")

    events = json.loads(cli.ok("events", "first", "--json").stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["kind"] == "run.started" and events[-1]["kind"] == "run.finished"
    tail = json.loads(cli.ok("events", "first", "--json", "--since", "20",
                             "--kind", "node.completed").stdout)
    assert tail and all(e["seq"] > 20 and e["kind"] == "node.completed" for e in tail)
    assert "node.completed" in cli.ok("events", "first").stdout


def test_a_crash_inside_a_node_resumes_without_repeating_a_side_effect(cli) -> None:
    crashed = cli("demo", "--crash-at", "classify", "--run-id", "boom")
    assert crashed.returncode == -signal.SIGKILL, (crashed.returncode, crashed.stderr)
    assert "← assess_severity" in crashed.stdout  # the first step of classify committed
    resume_line = crashed.stdout.strip().splitlines()[-1]
    assert resume_line == f"purpose-agent resume boom --db {cli.db_arg}"
    assert cli.effects("boom") == DEMO_EFFECTS[:2]
    [row] = json.loads(cli.ok("runs", "--json").stdout)
    assert (row["status"], row["current_node"], row["stalled"]) == ("running", "classify", True)

    resumed = cli.ok(*shlex.split(resume_line)[1:])
    assert "↺ 1 step(s) replayed from the journal, not run again" in resumed.stdout
    assert "→ assess_severity" not in resumed.stdout and "→ page_oncall" in resumed.stdout
    assert "⏸ run boom is paused" in resumed.stdout  # it goes on up to the approval

    approved = cli.ok("approve", "boom")
    assert "✓ run boom completed" in approved.stdout
    assert cli.effects("boom") == DEMO_EFFECTS  # each side effect exactly once


def test_without_a_terminal_or_yes_the_demo_pauses_and_says_how_to_approve(cli) -> None:
    paused = cli.ok("demo", "--run-id", "ask")
    assert "⏸ run ask is paused: node approve waits for a person's answer" in paused.stdout
    assert f"purpose-agent approve ask --db {cli.db_arg}" in paused.stdout
    assert f"purpose-agent reject ask --db {cli.db_arg}" in paused.stdout
    state = json.loads(cli.ok("show", "ask", "--json").stdout)
    assert state["status"] == "paused" and state["pending"]["kind"] == "interrupt"
    assert state["pending"]["payload"]["question"] == "Send this reply to ACME Corp?"
    assert "waiting for   a person's answer in node approve" in cli.ok("show", "ask").stdout

    done = cli.ok("approve", "ask")
    assert "✓ run ask completed after 5 node(s)" in done.stdout
    state = json.loads(cli.ok("show", "ask", "--json").stdout)
    assert state["data"]["approved"] is True and state["data"]["sent"]["to"] == "ACME Corp"
    assert cli.effects("ask") == DEMO_EFFECTS


def test_a_rejected_reply_is_never_sent(cli) -> None:
    cli.ok("demo", "--run-id", "no")
    done = cli.ok("reject", "no")
    assert "✓ run no completed after 4 node(s)" in done.stdout
    state = json.loads(cli.ok("show", "no", "--json").stdout)
    assert state["data"]["approved"] is False and "sent" not in state["data"]
    assert cli.effects("no") == DEMO_EFFECTS[:4]
    again = cli("approve", "no")
    cli.assert_error(again, 1, "cannot approve run 'no'", "completed")


def test_answer_and_edit_on_resume_and_untrusted_text_printed_literally(cli) -> None:
    cli.ok("demo", "--run-id", "edit")
    markup = "[red]pwned[/red]"  # a model's text that rich would otherwise interpret
    control = "\x1b[2J\x9b31m"  # clear the screen, then a C1 escape: shown, never sent raw
    resumed = cli.ok("resume", "edit", "--answer", '"yes"', "--set", f"draft={json.dumps(markup)}",
                     "--set", f"note={json.dumps(control)}")
    assert "✓ run edit completed" in resumed.stdout
    state = json.loads(cli.ok("show", "edit", "--json").stdout)
    assert state["data"]["draft"] == markup and state["data"]["approved"] is True
    assert cli.effects("edit")[-1] == f"send: emailed ACME Corp ({len(markup)} chars)"
    shown = cli.many(["show", "edit"], ["transcript", "edit"], ["events", "edit"])
    for out in [resumed.stdout] + [result.stdout for result in shown]:
        assert markup in out and "\x1b" not in out and "\x9b" not in out
    assert '"note": "\\u001b[2J\\x9b31m"' in shown[0].stdout
    assert "data edited: draft, note" in shown[1].stdout
