"""A failed run's traceback is shown by ``show`` and ``transcript`` (and kept in
``show --json``), so the reason a node failed is not lost once the process is gone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FAILING_FLOW = '''
import sys

from purpose_agent import END, Flow

flow = Flow("invoices")


def parse_amount(text):
    return float(text)


@flow.node
def parse(ctx):
    return {"total": parse_amount(ctx.data["text"])}


flow.edge("parse", END)

if __name__ == "__main__":
    print(flow.run({"text": "12,5"}, run_id=sys.argv[1]).status)
'''


def test_show_and_transcript_print_the_failed_nodes_traceback(cli) -> None:
    script = cli.cwd / "invoices.py"
    script.write_text(textwrap.dedent(FAILING_FLOW), encoding="utf-8")
    ran = subprocess.run([sys.executable, str(script), "inv-1"], cwd=cli.cwd, env=cli.env,
                         text=True, capture_output=True, timeout=60)
    assert ran.stdout.strip() == "failed", ran.stderr
    assert ran.stderr == "", "a library prints nothing unless logging is configured"
    show, transcript, as_json = cli.many(["show", "inv-1"], ["transcript", "inv-1"],
                                         ["show", "inv-1", "--json"])
    for result in (show, transcript):
        assert result.returncode == 0, result.stderr
        assert "Traceback (most recent call last):" in result.stdout
        assert "in parse_amount" in result.stdout
        assert "ValueError: could not convert string to float: '12,5'" in result.stdout
    assert "traceback     of the last attempt:" in show.stdout
    error = json.loads(as_json.stdout)["error"]
    assert error["traceback"].rstrip().endswith("could not convert string to float: '12,5'")
