"""The README's durable-flow example, run as a user would: start, approve, crash, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "approval_flow.py"


def run(tmp_path: Path, command: str, crash: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PURPOSE_AGENT_DB"}
    env.pop("CRASH", None)
    if crash:
        env["CRASH"] = "1"
    return subprocess.run([sys.executable, str(EXAMPLE), command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_example_crash_and_approval(tmp_path: Path) -> None:
    started = run(tmp_path, "start")
    assert started.returncode == 0, started.stderr
    assert "paused" in started.stdout and "Refund 42.0?" in started.stdout
    crashed = run(tmp_path, "approve", crash=True)
    assert crashed.returncode == -signal.SIGKILL
    assert crashed.stdout.count("refunding") == 1
    resumed = run(tmp_path, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "completed" in resumed.stdout and "refund-A-17" in resumed.stdout
    assert "refunding" not in resumed.stdout and "fetching" not in resumed.stdout
    # the store is under .purpose_agent/ (git-ignored), nothing else lands in the directory
    assert [p.name for p in tmp_path.iterdir()] == [".purpose_agent"]
    assert (tmp_path / ".purpose_agent" / "refunds.db").is_file()


def test_running_the_example_again_says_why_in_one_line(tmp_path: Path) -> None:
    assert run(tmp_path, "start").returncode == 0
    again = run(tmp_path, "start")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.splitlines() == [
        "start: a run with id 'refund-A-17' already exists; resume it, or start a new run "
        "with another id"]
    assert run(tmp_path, "approve").returncode == 0
    for command in ("resume", "approve", "start"):
        done = run(tmp_path, command)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"{command}: "), done.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    early = run(fresh, "resume")
    assert early.returncode == 1 and early.stderr.startswith("resume: no run 'refund-A-17'")


def test_readme_shows_the_whole_example_with_its_main_block() -> None:
    readme = (ROOT / "README.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()
    assert body in readme
    assert 'flow.run({"order_id": "A-17"}, checkpointer=store, run_id="refund-A-17")' in body
    assert "state.raise_for_status()" in body


