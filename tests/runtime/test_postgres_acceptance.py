"""The seed contract's five promises (../shared/acceptance/test_sprint2_checkpoint.py, which
covers the in-memory, JSONL and SQLite stores) kept by the PostgreSQL store, through the
public API only."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.state import RunState, RunStatus


def test_t2_1_interrupted_after_node_2_resumes_at_node_3(pg_url):
    with open_checkpointer(pg_url) as cp:
        assert type(cp).__name__ == "PostgresCheckpointer"
        state = RunState(run_id="flow1", purpose="5 node flow", max_steps=5)
        for i in (1, 2):
            state.mark_node_started(f"node_{i}")
            state.mark_node_completed(f"node_{i}", output={"result": f"done_{i}"})
            state.current_step = i
            cp.save_event(create_event("flow1", EventKind.NODE_COMPLETED, seq=i,
                                       node=f"node_{i}"))
        cp.save_snapshot("flow1", state)
    with open_checkpointer(pg_url) as cp:  # the "restart"
        restored = cp.load_latest("flow1")
        assert restored is not None and restored.current_step == 2
        assert restored.completed_nodes == ["node_1", "node_2"]
        restored.mark_node_started("node_3")
        assert restored.current_node == "node_3"


def test_t2_2_a_completed_tool_call_is_found_cached_after_a_restart(pg_url):
    with open_checkpointer(pg_url) as cp:
        state = RunState(run_id="tool_test", current_step=1)
        key = state.get_idempotency_key("calculator", "2+2")
        assert not state.has_cached_result(key)
        state.cache_result(key, "4")
        cp.save_snapshot("tool_test", state)
    with open_checkpointer(pg_url) as cp:
        again = cp.load_latest("tool_test")
        assert again.get_idempotency_key("calculator", "2+2") == key
        assert again.has_cached_result(key) and again.get_cached_result(key) == "4"


def test_t2_3_a_person_edits_a_paused_run_and_it_resumes_with_the_edit(pg_url):
    with open_checkpointer(pg_url) as cp:
        state = RunState(run_id="hitl_test", status=RunStatus.RUNNING,
                         data={"task": "review code", "approval": None})
        cp.save_snapshot("hitl_test", state)
        state.status = RunStatus.PAUSED
        cp.save_snapshot("hitl_test", state)
    with open_checkpointer(pg_url) as cp:  # the person, in another session
        loaded = cp.load_latest("hitl_test")
        assert loaded.status == RunStatus.PAUSED
        loaded.data["approval"] = "approved"
        loaded.status = RunStatus.RUNNING
        cp.save_snapshot("hitl_test", loaded)
    with open_checkpointer(pg_url) as cp:
        final = cp.load_latest("hitl_test")
        assert final.data["approval"] == "approved" and final.status == RunStatus.RUNNING


WRITER = """
    import os, signal, sys
    from purpose_agent.runtime.checkpoint import open_checkpointer
    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.state import RunState

    cp = open_checkpointer(sys.argv[1])
    state = RunState(run_id="pg_test", purpose="durable", current_step=7,
                     data={"progress": "midway"})
    cp.save_snapshot("pg_test", state)
    for i in range(5):
        cp.save_event(create_event("pg_test", EventKind.NODE_PROGRESS, seq=i + 1))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no clean exit
"""


def test_t2_4_what_a_killed_process_committed_survives(pg_url):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(WRITER), pg_url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with open_checkpointer(pg_url) as cp:
        restored = cp.load_latest("pg_test")
        assert restored is not None and restored.current_step == 7
        assert restored.data == {"progress": "midway"}
        assert [e.seq for e in cp.list_events("pg_test")] == [1, 2, 3, 4, 5]
        assert "pg_test" in cp.list_runs()


def test_t2_5_the_event_log_reconstructs_the_transcript_also_from_a_seq_on(pg_url):
    with open_checkpointer(pg_url) as cp:
        for i in range(10):
            cp.save_event(create_event("log_test", EventKind.NODE_PROGRESS, seq=i + 1,
                                       message=f"step {i + 1}"))
        cp.save_snapshot("log_test", RunState(run_id="log_test", current_step=10))
    with open_checkpointer(pg_url) as cp:
        events = cp.list_events("log_test")
        assert [e.seq for e in events] == list(range(1, 11))
        assert [e.payload["message"] for e in events] == [f"step {i}" for i in range(1, 11)]
        assert cp.load_latest("log_test") is not None
        partial = cp.list_events("log_test", since_seq=5)
        assert [e.seq for e in partial] == [6, 7, 8, 9, 10]
