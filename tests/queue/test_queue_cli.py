"""The queue from a shell: enqueue, worker, workers, runs, approve — real processes."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from queue_helpers import wait_for
from queue_processes import FLOWS, SCRIPT, WorkerProcess

from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.state import RunStatus


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SCRIPT
    env = {k: v for k, v in os.environ.items() if k != "PURPOSE_AGENT_FLOWS"}
    return subprocess.run([SCRIPT, *args], text=True, capture_output=True, timeout=60,
                          cwd=cwd, env=env)


@pytest.fixture
def spawn_worker(queue_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def spawn(*flows: str) -> WorkerProcess:
        started.append(WorkerProcess(queue_url, tmp_path / "effects.log", *flows))
        return started[-1]

    yield spawn
    for worker in started:
        worker.kill()


def test_enqueue_prints_the_run_id_and_a_dedup_key_gives_it_again(
        queue_url: str, queue_cp: BaseCheckpointer) -> None:
    args = ("enqueue", "--flow", f"{FLOWS}:effects", "--data", '{"n": 1}', "--db", queue_url,
            "--dedup-key", "k-1", "--priority", "2", "--queue", "mail", "--delay", "10s")
    first, again = cli(*args), cli(*args)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    run_id = first.stdout.strip()
    assert again.stdout.strip() == run_id
    assert queue_cp.list_runs() == [run_id]
    assert queue_cp.load_latest(run_id).status is RunStatus.QUEUED  # type: ignore[union-attr]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--data", "{oops"], 2, "--data is not valid JSON"),
    (["--data", "[1, 2]"], 2, "--data must be a JSON object"),
    (["--delay", "soon"], 2, "delay 'soon' is not a duration"),
    (["--queue", "a queue"], 2, "queue name 'a queue' is not allowed"),
    (["--priority", "high"], 2, "Invalid value for '--priority'"),
])
def test_bad_input_is_one_line_naming_what_was_wrong(
        queue_url: str, queue_cp: BaseCheckpointer, args: list[str], code: int,
        message: str) -> None:
    result = cli("enqueue", "--flow", f"{FLOWS}:effects", *args, "--db", queue_url)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert queue_cp.list_runs() == []


def test_a_flow_that_cannot_be_imported_and_a_store_without_a_queue(tmp_path: Path) -> None:
    missing = cli("enqueue", "--flow", "no_such_module:flow", "--db", str(tmp_path / "r.db"))
    assert missing.returncode == 6 and "cannot import flow 'no_such_module:flow'" in missing.stderr
    worker = cli("worker", "--flow", "no_such_module:flow", "--db", str(tmp_path / "r.db"))
    assert worker.returncode == 6 and "No module named 'no_such_module'" in worker.stderr
    jsonl = cli("enqueue", "--flow", f"{FLOWS}:effects", "--db", f"jsonl:///{tmp_path}/j")
    assert jsonl.returncode == 5 and "need a SQLite store" in jsonl.stderr
    bare = cli("worker", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert bare.returncode == 2 and "a worker needs the flows it may run" in bare.stderr


def test_unreachable_database_and_wrong_password_are_clear(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nowhere = cli("worker", "--flow", f"{FLOWS}:effects", "--db",
                  f"postgresql:///x?host={tmp_path}/no-socket-here")
    assert nowhere.returncode == 5 and "cannot connect to the PostgreSQL store" in nowhere.stderr
    assert "is the server running" in nowhere.stderr
    closed = cli("enqueue", "--flow", f"{FLOWS}:effects", "--db",
                 "postgresql://agent@127.0.0.1:1/agents")  # nothing listens on port 1
    assert closed.returncode == 5 and "is the server running" in closed.stderr
    if pg_server.tcp_port is None:
        pytest.skip("a wrong password needs the session's own cluster (its loopback port "
                    "checks passwords)")
    role = f"r_{uuid.uuid4().hex[:8]}"
    pg_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD 'right-pw'")
    pg_server.admin(f"GRANT CREATE ON DATABASE postgres TO {role}")
    wrong = pg_server.tcp_url(role, "wrong-pw")
    for command in (["worker", "--flow", f"{FLOWS}:effects"],
                    ["enqueue", "--flow", f"{FLOWS}:effects"], ["runs"], ["workers"]):
        refused = cli(*command, "--db", wrong)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 5 and len(lines) == 1, (command, refused.stderr)
        assert f'password authentication failed for user "{role}"' in lines[0]
        assert "check the user name and password" in lines[0]
        assert "wrong-pw" not in refused.stdout + refused.stderr
    right = cli("enqueue", "--flow", f"{FLOWS}:effects", "--db",
                pg_server.tcp_url(role, "right-pw") + f"?schema={role}")
    assert right.returncode == 0 and right.stdout.startswith("effects-"), right.stderr


def test_runs_says_why_a_queued_run_waits_and_who_owns_a_running_one(
        queue_url: str, spawn_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("enqueue", "--flow", f"{FLOWS}:gated", "--data",
        json.dumps({"gate": str(tmp_path / "gate")}), "--db", queue_url)
    nobody = cli("runs", "--db", queue_url, "--json")
    [row] = json.loads(nobody.stdout)
    assert row["status"] == "queued" and row["queue"]["waits"] == "no worker is running"
    worker = spawn_worker("effects")  # serves another flow
    [row] = json.loads(cli("runs", "--db", queue_url, "--json").stdout)
    assert row["queue"]["waits"] == "no running worker serves flow 'gated' on queue 'default'"
    table = cli("runs", "--db", queue_url).stdout
    assert "no running worker serves flow 'gated'" in table
    listed = json.loads(cli("workers", "--db", queue_url, "--json").stdout)
    assert [(w["id"], w["state"], w["flows"]) for w in listed] == [(worker.id, "running",
                                                                    ["effects"])]
    gated = spawn_worker("gated")
    wait_for(lambda: json.loads(cli("runs", "--db", queue_url, "--json").stdout)[0]["status"]
             == "running", timeout=30, what="the gated worker to claim the run")
    [row] = json.loads(cli("runs", "--db", queue_url, "--json").stdout)
    assert row["queue"]["worker"] == gated.id
    assert gated.id in cli("runs", "--db", queue_url).stdout
    (tmp_path / "gate").touch()


def test_approve_puts_a_queued_run_back_on_its_queue(
        queue_url: str, queue_cp: BaseCheckpointer, spawn_worker) -> None:  # type: ignore[no-untyped-def]
    run_id = cli("enqueue", "--flow", f"{FLOWS}:approval", "--db", queue_url).stdout.strip()
    spawn_worker("approval")
    wait_for(lambda: queue_cp.run_info(run_id).status is RunStatus.PAUSED,  # type: ignore[attr-defined]
             timeout=30, what="the run to ask")
    approved = cli("approve", run_id, "--answer", '"yes"', "--flow", f"{FLOWS}:approval",
                   "--db", queue_url)
    assert approved.returncode == 0, approved.stderr
    assert "is back on its queue" in approved.stdout
    wait_for(lambda: queue_cp.run_info(run_id).status is RunStatus.COMPLETED,  # type: ignore[attr-defined]
             timeout=30, what="a worker to finish the approved run")
    state = queue_cp.load_latest(run_id)
    assert state is not None and state.data["answer"] == "yes"
