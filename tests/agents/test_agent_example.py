"""examples/support_agent.py runs as the README shows (offline: a local scripted server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "support_agent.py"


@pytest.mark.parametrize("provider", [[], ["--claude"]], ids=["openai", "claude"])
def test_support_agent_example_offline_with_an_edited_refund(tmp_path: Path,
                                                             provider: list[str]) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PURPOSE_AGENT_DB", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--offline", *provider,
                           "A-17 arrived broken"],
                          input="25\n", env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Approve refund {'order_id': 'A-17', 'amount': 42.0}?" in proc.stdout
    assert "refunding 25.0 on A-17" in proc.stdout
    assert "I have handled your refund request for A-17." in proc.stdout
    assert "3 model calls, 45 tokens (30 in, 15 out)]" in proc.stdout
    # its store is under .purpose_agent/ (git-ignored), nothing else lands in the directory
    assert [p.name for p in tmp_path.iterdir()] == [".purpose_agent"]
    assert (tmp_path / ".purpose_agent" / "support.db").is_file()


def test_support_agent_example_at_its_budget_asks_for_more(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PURPOSE_AGENT_DB"}
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--offline", "--max-calls", "2",
                           "A-17 arrived broken"],
                          input="y\n3\n", env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "flow budget reached: 2 of 2 model calls" in proc.stdout
    assert "refunding 42.0 on A-17" in proc.stdout
    assert "3 model calls, 45 tokens (30 in, 15 out)]" in proc.stdout
