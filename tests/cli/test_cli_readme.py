"""The README's "Inspect your runs" session is real: replayed command by command, every
output line it shows is printed (lines with an elision "…" or a relative time aside)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
README_RUN = "incident-4f1c2a9e"


def readme_session() -> list[tuple[list[str], list[str]]]:
    """(command arguments, expected output lines) of the section's console block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Inspect your runs", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```console\n(.*?)```", section, re.S)
    assert block, "the README section has no console block"
    session: list[tuple[list[str], list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            session.append((shlex.split(line[2:], comments=True)[1:], []))
        elif line.strip() and "…" not in line and " ago " not in line:
            session[-1][1].append(line.rstrip())
    return session


def test_the_readme_session_is_what_the_commands_print(cli) -> None:
    del cli.env["PURPOSE_AGENT_DB"]  # the README uses the default store
    session = readme_session()
    assert [args[0] for args, _ in session] == [
        "demo", "runs", "resume", "show", "approve", "transcript"]
    run_id = None
    for args, expected in session:
        result = cli(*[run_id if a == README_RUN and run_id else a for a in args])
        if args[0] == "demo":
            assert result.returncode == -9, result.stderr
            run_id = re.search(r"resume (incident-\w+) ", result.stdout).group(1)
        else:
            assert result.returncode == 0, (args, result.stderr)
        printed = [line.rstrip() for line in result.stdout.replace(run_id, README_RUN)
                   .splitlines()]
        for line in expected:
            assert line in printed, (args, line)
