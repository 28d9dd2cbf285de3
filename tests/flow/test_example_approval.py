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
    env = {**os.environ, "PURPOSE_AGENT_DB": str(tmp_path / "refunds.db")}
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


def test_readme_shows_the_example_verbatim() -> None:
    readme = (ROOT / "README.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip().split('\nif __name__')[0]
    assert body in readme
