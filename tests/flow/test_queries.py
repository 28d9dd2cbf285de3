"""Queries answer without writing: ``Runner.next_node`` says what comes next and commits
nothing (ending a run is a named step of its own), and ``Flow.entry_node`` reads the
entry node without validating the graph (validation happens once, when a run starts or
resumes, with the same errors as before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from purpose_agent import END, Flow, FlowDefinitionError, SQLiteCheckpointer
from purpose_agent.flow import operations
from purpose_agent.runtime.owners import driver


def _flow() -> Flow:
    flow = Flow("queries")

    @flow.node
    def first(ctx):
        return {"n": 1}

    flow.edge("first", END)
    return flow


def test_next_node_is_a_query_and_ending_the_run_a_separate_commit(tmp_path: Path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    with driver() as owner:
        runner = operations.start(_flow()._plan(), {}, cp, "q1", None, owner)
        before = [e.kind for e in cp.list_events("q1")]
        runner.cancel_requested = True
        first = runner.next_node()
        assert runner.next_node() == first, "asking twice gives the same answer"
        assert [e.kind for e in cp.list_events("q1")] == before, "a query wrote events"
        assert cp.load_latest("q1").status == "running"
        assert runner.state.status == "running"

        runner.end(first)  # the named step that commits the run's end
        assert cp.load_latest("q1").status == "cancelled"
        assert [str(e.kind) for e in cp.list_events("q1")][-1] == "run.cancelled"


def test_entry_node_reads_without_validating_and_runs_validate_once(tmp_path: Path) -> None:
    flow = Flow("unfinished")

    @flow.node
    def a(ctx):
        return None

    assert flow.entry_node == "a"  # a node with no way out yet: still a readable entry
    with pytest.raises(FlowDefinitionError, match="node 'a' of flow 'unfinished' has no way "
                                                  r"out; add flow.edge\('a', <next node or "
                                                  r"END>\) or flow.route\('a', fn\)"):
        flow.validate()
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    with pytest.raises(FlowDefinitionError, match="has no way out"):
        flow.run({}, checkpointer=cp, run_id="u1")
    assert cp.list_runs() == [], "nothing is journaled for a flow that does not validate"
    assert Flow("empty").entry_node is None
    with pytest.raises(FlowDefinitionError, match="flow 'empty' has no nodes"):
        Flow("empty").validate()
