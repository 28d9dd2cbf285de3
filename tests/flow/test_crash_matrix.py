"""Crash recovery, proven by real SIGKILLs: a 5-node flow with two durable steps per
node is killed at every point of interest, then resumed in a new process."""

from __future__ import annotations

import os
import random
import signal

import pytest
from crash_flows import NODES
from crash_harness import Child, result_of

from purpose_agent.runtime.events import EventKind

POINTS = ["enter", "between", "last", "commit"]
EXPECTED_EFFECTS = [f"{n}.s{i}" for n in NODES for i in (1, 2)]
EXPECTED_DATA = {**{n: [f"{n.upper()}.S1", f"{n.upper()}.S2"] for n in NODES}, "trail": NODES}


def assert_exactly_once(child: Child, run_id: str) -> None:
    """Every step's effect happened once, every node committed once, seqs are 1..N."""
    assert sorted(child.effects_lines()) == sorted(EXPECTED_EFFECTS)
    cp = child.store()
    state = cp.load_latest(run_id)
    assert state.status == "completed"
    assert state.data == EXPECTED_DATA
    assert state.completed_nodes == NODES
    events = cp.list_events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    finished = [e.node for e in events if e.kind == EventKind.NODE_COMPLETED]
    assert finished == NODES


@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("point", POINTS)
def test_kill_and_resume(child: Child, node: str, point: str) -> None:
    killed = child("run", "crash-five", "r1", crash=f"{node}:{point}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if point == "commit" and node == NODES[-1]:
        # Killed after the final commit: the run is already complete and durable.
        assert child.store().load_latest("r1").status == "completed"
    else:
        assert child.store().load_latest("r1").status == "running"
        assert result_of(child("resume", "crash-five", "r1"))["status"] == "completed"
    assert_exactly_once(child, "r1")


def test_uninterrupted_run_is_the_reference(child: Child) -> None:
    out = result_of(child("run", "crash-five", "r1"))
    assert out["data"] == EXPECTED_DATA
    assert_exactly_once(child, "r1")


def test_nodes_committed_before_a_crash_never_run_again(child: Child) -> None:
    child("run", "crash-five", "r1", crash="n4:between")
    result_of(child("resume", "crash-five", "r1"))
    started = [e.node for e in child.store().list_events("r1", kinds=EventKind.NODE_STARTED)]
    # n4 started twice (killed mid-node, then re-executed); n1-n3 once; n5 once.
    assert started.count("n4") == 2
    assert [n for n in started if n != "n4"] == ["n1", "n2", "n3", "n5"]


FUZZ_CASES = int(os.environ.get("PURPOSE_AGENT_CRASH_FUZZ", "50"))


@pytest.mark.parametrize("seed", range(FUZZ_CASES))
def test_crash_fuzz(tmp_path, seed: int) -> None:
    """Random sequences of kill points, each resume possibly killed again."""
    rng = random.Random(seed)
    backend = rng.choice(["sqlite", "jsonl"])
    url = f"sqlite:///{tmp_path}/runs.db" if backend == "sqlite" else f"jsonl:///{tmp_path}/runs"
    child = Child(url, tmp_path / "effects.log")
    kills = rng.randint(1, 3)
    plan = sorted(rng.sample([(n, p) for n in range(len(NODES)) for p in range(len(POINTS))],
                             kills))
    action = "run"
    for node_index, point_index in plan:
        crash = f"{NODES[node_index]}:{POINTS[point_index]}"
        proc = child(action, "crash-five", "r1", crash=crash)
        assert proc.returncode == -signal.SIGKILL, (crash, proc.stdout, proc.stderr)
        action = "resume"
    if child.store().load_latest("r1").status != "completed":
        assert result_of(child("resume", "crash-five", "r1"))["status"] == "completed"
    assert_exactly_once(child, "r1")
