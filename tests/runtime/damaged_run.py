"""A run to damage: known versions, seqs and step records, on any backend."""

from __future__ import annotations

from purpose_agent.runtime.checkpoint._base import BaseCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS
NODES = 4  # node commits after the first: versions 2..5, seqs 2..9 (two per commit)


def build(store: BaseCheckpointer, run_id: str = "r1") -> RunState:
    """A paused run: version 1 (a snapshot, seq 1), then one commit per node, each with
    two events, a delta and a step record: version v holds seqs 2v-2 and 2v-1."""
    state = RunState(run_id=run_id, status=RunStatus.RUNNING, data={"n": 0})
    store.commit(run_id, Commit(events=[create_event(run_id, PROGRESS, n=0)], state=state,
                                snapshot=True, create=True))
    for i in range(1, NODES + 1):
        state.current_step = i
        state.data["n"] = i
        if i == NODES:
            state.status = RunStatus.PAUSED
        store.commit(run_id, Commit(
            events=[create_event(run_id, PROGRESS, n=i, part="a"),
                    create_event(run_id, PROGRESS, n=i, part="b")],
            state=state, delta=Delta({"n": ["set", i]}, node=f"n{i}"),
            steps=[StepRecord(key=f"{i}/s/0", step=i, node=f"n{i}", index=0, name="s",
                              result=i)]))
    return state
