"""Crash safety of group commit: 32 runs commit at once in one process (threads and
tasks of a loop, sharing transactions), the process is SIGKILLed at random points again
and again, then resumed; every run ends exactly as if it had run alone."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from crash_many_child import NODES, RUNS

from purpose_agent import open_checkpointer
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus

CHILD = Path(__file__).parent / "crash_many_child.py"


def run_child(url: str, effects: Path, kill_after: int | None) -> tuple[list[str], int]:
    """Run the child, which SIGKILLs itself right after printing its ``kill_after``-th
    line (None: let it finish). Every line it printed, and its return code."""
    env = {**os.environ}
    env.pop("KILL_AFTER", None)
    if kill_after is not None:
        env["KILL_AFTER"] = str(kill_after)
    proc = subprocess.run([sys.executable, str(CHILD), url, str(effects)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=CHILD.parent)
    if kill_after is None:
        assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.splitlines()], proc.returncode


@pytest.mark.parametrize("seed", range(3))
def test_32_concurrent_runs_killed_at_random_points(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    url, effects = f"sqlite:///{tmp_path}/runs.db", tmp_path / "effects.log"
    told: list[str] = []
    # Each run prints 2 lines per node: 32 runs * 8 nodes * 2 = 512 lines in all. The
    # child kills itself right after a random one of them, at a random point of the
    # runs' commits: just after being told that something was durable.
    kills = 0
    for _ in range(4):
        lines, code = run_child(url, effects, kill_after=rng.randint(5, 200))
        told += lines
        if "done" in lines:
            break
        assert code == -signal.SIGKILL
        kills += 1
    lines, _code = run_child(url, effects, kill_after=None)
    told += lines
    assert kills >= 1

    cp = open_checkpointer(url)
    committed_steps = {tuple(line.split()[1:3]): line.split()[3] for line in told
                       if line.startswith("step ")}
    committed_nodes = {tuple(line.split()[1:3]): int(line.split()[3]) for line in told
                       if line.startswith("node ")}
    last_effect: dict[tuple[str, str], str] = {}
    effect_count: dict[tuple[str, str], int] = defaultdict(int)
    for line in effects.read_text().splitlines():
        label, token = line.split()
        run, node = label.split("/")
        last_effect[(run, node)] = token
        effect_count[(run, node)] += 1
    for run in RUNS:
        state = cp.load_latest(run)
        assert state is not None and state.status == RunStatus.COMPLETED, run
        events = cp.list_events(run)
        # Seqs contiguous: no gap, no duplicate, across every kill.
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), run
        completed = [e.node for e in events if e.kind == EventKind.NODE_COMPLETED]
        assert completed == NODES, (run, completed)  # each node committed exactly once
        for node in NODES:
            # The run's data holds the result of the step execution whose effect came
            # last: no step ran again after its result was committed.
            assert state.data[node] == last_effect[(run, node)], (run, node)
            # What this process was told was durable is what the store holds.
            if (run, node) in committed_steps:
                assert state.data[node] == committed_steps[(run, node)], (run, node)
                assert effect_count[(run, node)] <= kills + 1
            executed = [e.payload["pid"] for e in events if e.kind == EventKind.NODE_PROGRESS
                        and e.node == node]
            assert len(executed) == 1, (run, node, executed)
            if (run, node) in committed_nodes:
                # The execution whose commit a process was told about is the one the
                # store holds: no committed node was lost and done again later.
                assert executed == [committed_nodes[(run, node)]], (run, node)
    cp.close()
