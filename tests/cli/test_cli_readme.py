"""Every console block of the README is real output: each block's commands are run, in
order, in a fresh directory, and what they print is compared line by line with the
block. A line ``…`` stands for lines cut from the output (any number, none included), a
``…`` inside a line for text cut from it; nothing else may differ. Run ids, the temporary
directory and relative times ("5s ago") are normalised first."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SCRIPT_DIR = os.path.dirname(sys.executable)

# The README's own spelling of what changes from one run to the next.
README_IDS = {"incident": "incident-4f1c2a9e", "support": "support-1efee9d6"}


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str]
    expected: list[str] = field(default_factory=list)


def console_blocks() -> list[tuple[int, list[Command]]]:
    """(line number, commands with their expected output) of each console block."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```console\n(.*?)```", text, re.S):
        lineno = text[: match.start()].count("\n") + 1
        commands: list[Command] = []
        pending = ""
        for line in match.group(1).splitlines():
            if pending or line.startswith("$ "):
                pending += (line[2:] if not pending else " " + line.strip())
                if pending.endswith("\\"):
                    pending = pending[:-1]
                    continue
                words = shlex.split(pending, comments=True)
                pending = ""
                env = {}
                while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                    name, _, value = words.pop(0).partition("=")
                    env[name] = value
                commands.append(Command(words, env))
            else:
                assert commands, f"README line {lineno}: output before any command"
                commands[-1].expected.append(line.rstrip())
        blocks.append((lineno, commands))
    return blocks


def pattern(expected: list[str]) -> re.Pattern[str]:
    """The regex an output must match in full: a line ``…`` is any number of lines, a
    ``…`` in a line any text."""
    parts = []
    while expected and not expected[-1]:  # the blank line before the next command
        expected = expected[:-1]
    for line in expected:
        if line.strip() == "…":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(piece) for piece in line.split("…")) + "\n")
    return re.compile("".join(parts))


def normalise(text: str, cwd: Path) -> str:
    for prefix, readme_id in README_IDS.items():
        text = re.sub(rf"\b{prefix}-[0-9a-f]{{8}}\b", readme_id, text)
    # In a table cell the width stays: "12s ago" on a slow machine widens its column by
    # one, and its cell must still read as the README's "0s ago " does.
    text = re.sub(r"\b\d+[smhd] ago *(?= │)", lambda m: "0s ago".ljust(len(m.group())), text)
    text = re.sub(r"\b\d+[smhd] ago\b", "0s ago", text)
    text = text.replace(str(cwd), "/home/you/project")
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


# What a person types at a prompt in a README session, by the prompt's end: a terminal
# shows it after the prompt, a pipe does not, so it is written there for the comparison.
TYPED = {"[y / amount / n] ": "25"}


def run(command: Command, cwd: Path, env: dict[str, str]) -> str:
    argv = list(command.argv)
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "purpose-agent":
        argv[0] = os.path.join(SCRIPT_DIR, "purpose-agent")
    typed = "".join(f"{answer}\n" for answer in TYPED.values())
    result = subprocess.run(argv, cwd=cwd, env={**env, **command.env}, text=True,
                            input=typed, capture_output=True, timeout=120)
    out = result.stdout
    for prompt, answer in TYPED.items():
        out = out.replace(prompt, f"{prompt}{answer}\n")
    if result.returncode == -9:
        out += "Killed\n"  # what the shell says of a SIGKILLed command
    else:
        assert result.returncode == 0 or result.stderr, (argv, result.returncode)
        out += result.stderr
    return out


def block_ids() -> list[str]:
    return [f"README line {lineno}" for lineno, _ in console_blocks()]


@pytest.mark.parametrize("index", range(len(console_blocks())), ids=block_ids())
def test_a_console_block_of_the_readme_is_what_its_commands_print(tmp_path, index) -> None:
    _lineno, commands = console_blocks()[index]
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PURPOSE_AGENT_") and k not in ("COLUMNS", "CRASH")}
    ids: dict[str, str] = {}
    for command in commands:
        # A command about a run uses the id this session's run really got.
        command.argv = [ids.get(word, word) for word in command.argv]
        printed = run(command, tmp_path, env)
        for prefix, readme_id in README_IDS.items():
            found = re.search(rf"\b{prefix}-[0-9a-f]{{8}}\b", printed)
            if found and readme_id not in ids:
                ids[readme_id] = found.group()
        shown = normalise(printed, tmp_path)
        expected = pattern(command.expected)
        assert expected.fullmatch(shown), (
            f"$ {shlex.join(command.argv)}\n--- README ---\n" + "\n".join(command.expected)
            + "\n--- printed ---\n" + shown)


def test_the_readme_has_console_blocks_and_they_parse() -> None:
    blocks = console_blocks()
    assert len(blocks) >= 3
    for lineno, commands in blocks:
        assert commands, f"README line {lineno}: a console block without a command"
