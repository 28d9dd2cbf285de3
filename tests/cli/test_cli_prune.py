"""Retention from the command line: `purpose-agent prune --older-than AGE` deletes the
finished runs last updated more than AGE ago, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json

from cli_stores import SQLITE_ONLY

USAGE = 2


def test_prune_deletes_old_finished_runs_and_keeps_the_rest(cli) -> None:
    cli.ok("demo", "--yes", "--run-id", "done")
    cli.ok("demo", "--run-id", "waiting")  # paused for approval: never pruned
    cli.ok("demo", "--run-id", "stopped")
    cli.ok("cancel", "stopped")
    assert "pruned 0 runs" in cli.ok("prune", "--older-than", "30d").stdout  # all recent
    out = cli.ok("prune", "--older-than", "0s", "--status", "completed").stdout
    assert "pruned 1 run " in out and "completed" in out
    assert sorted(json.loads(cli.ok("prune", "--older-than", "0s", "--json").stdout)
                  .items()) == [("pruned", 1), ("statuses", ["cancelled", "completed",
                                                             "failed"])]
    runs = json.loads(cli.ok("runs", "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in runs] == [("waiting", "paused")]
    cli.assert_error(cli("show", "done"), 3, "no run 'done'")


def test_prune_refuses_what_it_cannot_mean(cli) -> None:
    cli.assert_error(cli("prune", "--older-than", "30"), USAGE, "30d")
    cli.assert_error(cli("prune", "--older-than", "soon"), USAGE, "not an age")
    cli.assert_error(cli("prune", "--older-than", "1d", "--status", "paused"), USAGE,
                     "only finished runs")


@SQLITE_ONLY  # a SQLite file that must not be created (a PostgreSQL store is a schema)
def test_prune_of_a_missing_store_creates_none(cli) -> None:
    assert "no store at" in cli.ok("prune", "--older-than", "1d").stdout
    assert not cli.db.exists()
