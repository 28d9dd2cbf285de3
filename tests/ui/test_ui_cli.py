"""``purpose-agent ui`` as a person starts it: a real process, a real port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ui_flows import approval

from purpose_agent import SQLiteCheckpointer
from purpose_agent.runtime.state import RunStatus

SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))
FLOWS_FILE = Path(__file__).parent / "ui_flows.py"


@pytest.fixture
def launch(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        assert SCRIPT, "the purpose-agent script is not installed"
        env = {k: v for k, v in os.environ.items() if k != "PURPOSE_AGENT_UI_TOKEN"}
        process = subprocess.Popen([SCRIPT, "ui", *args], cwd=tmp_path, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _address(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()  # printed once the socket listens
    found = re.search(r"inspector on (http://\S+/)", line)
    assert found, (line, process.stderr.read() if process.poll() is not None else "")  # type: ignore[union-attr]
    return found.group(1)


def test_ui_serves_the_store_and_approves_with_a_flow_given_by_file(
        launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "runs.db"
    with SQLiteCheckpointer(str(db)) as cp:
        assert approval.run({}, checkpointer=cp, run_id="cli-1").status is RunStatus.PAUSED
    process = launch("--db", str(db), "--port", "0", "--flow", f"{FLOWS_FILE}:approval")
    base = _address(process)
    assert base.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=base) as client:
        page = client.get("/runs")
        assert page.status_code == 200 and 'data-run="cli-1"' in page.text
        token = re.search(r'name="csrf-token" content="(\w+)"', page.text).group(1)  # type: ignore[union-attr]
        approved = client.post("/runs/cli-1/approve", data={"csrf": token})
        assert approved.status_code == 303, approved.text
        # the server's process runs the flow; follow the run as the page does
        for _ in range(2000):
            header = client.get("/runs/cli-1?fragment=header").text
            if 'data-state="completed:' in header:
                break
        assert 'data-state="completed:' in header
    with SQLiteCheckpointer(str(db), read_only=True) as cp:
        state = cp.load_latest("cli-1")
        assert state is not None and state.data["outcome"] == "sent"
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0, process.stderr.read()  # type: ignore[union-attr]


def test_ui_refuses_to_listen_beyond_loopback_without_a_token(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "runs.db"
    SQLiteCheckpointer(str(db)).close()
    process = launch("--db", str(db), "--host", "0.0.0.0", "--port", "0")
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "--token" in err and "PURPOSE_AGENT_UI_TOKEN" in err
    assert "Traceback" not in err


def test_ui_without_a_store_says_so(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    process = launch("--db", str(tmp_path / "none.db"), "--port", "0")
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 5 and "no store at" in err
    assert not (tmp_path / "none.db").exists()
