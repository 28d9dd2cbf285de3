"""`purpose-agent runs` filters by flow and run-id search and pages by cursor: a full
listing prints the `--after` for the next page, and walking the pages lists every run
once, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import shlex

import pytest

from purpose_agent import END, Flow
from purpose_agent.runtime.checkpoint import open_checkpointer

USAGE = 2


def _flow(name: str) -> Flow:
    flow = Flow(name)
    flow.add(lambda ctx: {"done": True}, name="only")
    flow.edge("only", END)
    return flow


@pytest.mark.parametrize("cli", ["sqlite", "postgres"], indirect=True)
def test_runs_filters_and_pages_by_cursor(cli) -> None:
    url = str(cli.db) if "://" in str(cli.db) else f"sqlite:///{cli.db}"
    made: list[str] = []
    with open_checkpointer(url) as cp:
        for i in range(23):
            run_id = f"{'tri' if i % 2 else 'ref'}-{i:02d}"
            _flow("triage" if i % 2 else "refund").run({}, checkpointer=cp, run_id=run_id)
            made.append(run_id)
    newest_first = made[::-1]

    seen: list[str] = []
    args = ["runs", "-n", "10"]
    while True:
        page = cli.ok(*args).stdout
        rows = [r["run_id"] for r in json.loads(cli.ok(*args, "--json").stdout)]
        seen += rows
        hint = [line for line in page.splitlines() if "--after" in line]
        if len(rows) < 10:
            assert not hint
            break
        assert hint, page
        args = ["runs", "-n", "10", "--after", shlex.split(hint[0].split("--after", 1)[1])[0]]
    assert seen == newest_first  # every run once, in order

    triage = json.loads(cli.ok("runs", "--flow", "triage", "-n", "100", "--json").stdout)
    assert [r["run_id"] for r in triage] == [r for r in newest_first if r.startswith("tri")]
    found = json.loads(cli.ok("runs", "--search", "-1", "--json").stdout)
    assert [r["run_id"] for r in found] == [r for r in newest_first if "-1" in r]
    assert "of flow nope" in cli.ok("runs", "--flow", "nope").stdout
    cli.assert_error(cli("runs", "--after", "yesterday"), USAGE, "not a cursor")
