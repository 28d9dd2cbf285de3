"""Retention: prune_runs deletes finished runs last updated before a time, in batches,
the same way on every store (see conftest.BACKENDS); runs that are not finished are
never deleted, whatever their age."""

from __future__ import annotations

import pytest

from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus


def _run(store, run_id: str, status: RunStatus) -> float:
    state = RunState(run_id=run_id, status=status, data={"id": run_id})
    store.commit(run_id, Commit(events=[create_event(run_id, EventKind.NODE_PROGRESS)],
                                state=state, snapshot=True,
                                steps=[StepRecord("k", 1, "n", 0, "s", result=1)]))
    return store.run_info(run_id).updated_at


def test_prune_deletes_finished_runs_updated_before_the_cutoff_in_batches(store):
    old = {f"done-{i}": _run(store, f"done-{i}", RunStatus.COMPLETED) for i in range(5)}
    _run(store, "failed", RunStatus.FAILED)
    _run(store, "cancelled", RunStatus.CANCELLED)
    for status in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.PENDING):
        _run(store, f"open-{status}", status)
    cutoff = _run(store, "recent", RunStatus.COMPLETED)  # updated at the cutoff: kept
    assert max(old.values()) <= cutoff
    assert store.prune_runs(updated_before=cutoff, statuses=["completed"], batch=2) == 5
    kept = set(store.list_runs())
    assert kept == {"failed", "cancelled", "open-running", "open-paused", "open-pending",
                    "recent"}
    for run_id in old:  # everything journaled for the run is gone
        assert store.load_latest(run_id) is None and store.list_events(run_id) == []
        assert store.load_steps(run_id, 1) == [] and store.next_seq(run_id) == 1
    assert store.prune_runs(updated_before=cutoff + 3600, batch=1) == 3  # every finished one
    assert set(store.list_runs()) == {"open-running", "open-paused", "open-pending"}
    assert store.prune_runs(updated_before=cutoff + 3600) == 0


@pytest.mark.parametrize("statuses", [["running"], ["paused", "completed"], ["pending"]])
def test_prune_refuses_a_status_of_a_run_that_is_not_finished(store, statuses):
    _run(store, "open", RunStatus.PAUSED)
    with pytest.raises(ValueError, match="finished"):
        store.prune_runs(updated_before=1e12, statuses=statuses)
    assert store.list_runs() == ["open"]


@pytest.mark.parametrize("batch", [0, -1, 1.5])
def test_prune_refuses_a_batch_that_is_not_a_positive_whole_number(store, batch):
    with pytest.raises(ValueError, match="batch"):
        store.prune_runs(updated_before=1e12, batch=batch)


def test_sqlite_prunes_each_batch_in_one_transaction(tmp_path):
    from purpose_agent.runtime.checkpoint import SQLiteCheckpointer

    store = SQLiteCheckpointer(tmp_path / "runs.db")
    cutoff = max(_run(store, f"done-{i}", RunStatus.COMPLETED) for i in range(5)) + 1
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    assert store.prune_runs(updated_before=cutoff, batch=2) == 5
    assert statements.count("BEGIN IMMEDIATE") == 3  # 2 + 2 + 1 (the last, short, batch)
    assert store.list_runs() == []
