"""A claim is one write transaction: the lease, the worker and ``run.resumed`` together,
and the run's state handed back from it, so nothing stands between a claim and the
run's first step (no second commit, no re-read of what the claim just wrote)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from queue_flows import effects

from purpose_agent import END, Flow, NodeContext
from purpose_agent.errors import LeaseError
from purpose_agent.flow.queueing import fail_run, take_up
from purpose_agent.runtime.checkpoint import BaseCheckpointer, SQLiteCheckpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.journal import Commit
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.queue import queue_store
from purpose_agent.runtime.state import RunStatus


class Transactions:
    """Counts a store's transactions as they begin, on the store's own connections:
    SQLite, every statement that starts outside a transaction (a ``BEGIN …`` or an
    autocommit read); PostgreSQL, every connection taken from the store's pool (each
    holds one transaction, or one autocommit statement). ``writes``: the transactions
    that may write (SQLite ``BEGIN IMMEDIATE``; PostgreSQL, every one)."""

    def __init__(self, cp: BaseCheckpointer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = self.writes = 0
        if isinstance(cp, SQLiteCheckpointer):
            db = cp._db

            def trace(sql: str) -> None:
                if not db.in_transaction and not sql.startswith(("COMMIT", "ROLLBACK")):
                    self.count += 1
                    self.writes += sql.startswith("BEGIN IMMEDIATE")

            db.set_trace_callback(trace)
            return
        taken = cp._connection  # type: ignore[attr-defined]

        @contextmanager
        def connection() -> Iterator[Any]:
            self.count += 1
            self.writes += 1
            with taken() as conn:
                yield conn

        monkeypatch.setattr(cp, "_connection", connection)

    def since(self, mark: tuple[int, int]) -> tuple[int, int]:
        return self.count - mark[0], self.writes - mark[1]

    def mark(self) -> tuple[int, int]:
        return self.count, self.writes


def _claim(cp: BaseCheckpointer, owner: str, **kw: Any) -> Any:
    options: dict[str, Any] = {"worker": "w-test", "queues": ("default",), "ttl": 30.0}
    options.setdefault("flows", ("effects",))
    options.update(kw)
    return queue_store(cp).claim(owner=owner, **options)


def _kinds(events: list[PAEvent]) -> list[tuple[int, str]]:
    return [(e.seq, str(e.kind)) for e in events]


def test_a_claim_journals_run_resumed_with_the_lease_in_one_write(
        queue_cp: BaseCheckpointer, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = effects.enqueue({"ticket": 7}, checkpointer=queue_cp)
    counter = Transactions(queue_cp, monkeypatch)
    with driver() as owner:
        mark = counter.mark()
        claim = _claim(queue_cp, owner)
        assert claim is not None
        assert counter.since(mark)[1] == 1  # one write transaction: lease, worker, event
    events = queue_cp.list_events(run_id)
    assert _kinds(events) == [(1, "run.started"), (2, "run.resumed")]
    assert events[1].payload["previous"] == "queued" and events[1].payload["worker"] is True
    assert events[1].node == "one"
    assert [e.seq for e in claim.events] == [2]
    assert claim.lease.next_seq == 3 and claim.lease.owner == owner
    stored = queue_cp.load_latest(run_id)
    assert stored is not None and stored.status is RunStatus.RUNNING
    assert claim.state is not None and claim.state.to_dict() == stored.to_dict()
    assert claim.steps == []  # nothing journaled for its first node yet
    info = queue_cp.run_info(run_id)
    assert info is not None and info.owner == owner and info.status is RunStatus.RUNNING
    assert queue_store(queue_cp).queue_rows([run_id])[run_id].worker == "w-test"


seen: list[tuple[int, int]] = []  # the transaction count when the first step began
probe: dict[str, Any] = {}
first_step = Flow("first_step", purpose="Counts the store's transactions at its first step")


@first_step.node
def only(ctx: NodeContext) -> dict[str, object]:
    ctx.step("look", lambda: seen.append(probe["mark"]()) or 1)
    return {"done": True}


first_step.edge("only", END)


def test_from_a_claim_to_the_first_step_there_is_no_other_transaction(
        queue_cp: BaseCheckpointer, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = first_step.enqueue({}, checkpointer=queue_cp)
    counter = Transactions(queue_cp, monkeypatch)
    seen.clear()
    probe["mark"] = counter.mark
    with driver() as owner:
        claim = _claim(queue_cp, owner, flows=("first_step",))
        assert claim is not None
        after_claim = counter.mark()
        runner = take_up(first_step, queue_cp, claim)
        state = runner.drive()
    assert state.status is RunStatus.COMPLETED
    assert seen == [after_claim]  # take_up and the node's start: no store round trip
    kinds = [str(e.kind) for e in queue_cp.list_events(run_id)]
    assert kinds[:3] == ["run.started", "run.resumed", "node.started"]
    assert kinds[-1] == "run.finished"
    assert [e.seq for e in queue_cp.list_events(run_id)] == list(range(1, len(kinds) + 1))


def test_a_takeover_claim_resumes_at_the_next_seq_and_fences_the_old_lease(
        queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as first, driver() as second:
        stale = _claim(queue_cp, first, ttl=0.0)  # expires at once: its worker "died"
        claim = _claim(queue_cp, second)
        assert stale is not None and claim is not None
        assert claim.taken_over and claim.takeovers == 1
        assert claim.lease.fence == stale.lease.fence + 1 and claim.lease.next_seq == 4
        events = queue_cp.list_events(run_id)
        assert _kinds(events) == [(1, "run.started"), (2, "run.resumed"), (3, "run.resumed")]
        assert events[2].payload["previous"] == "running"
        with pytest.raises(LeaseError):  # the first worker's writes are refused
            queue_cp.commit(run_id, Commit(fence=stale.lease.fence, release=True))
        assert queue_cp.list_events(run_id) == events
        assert claim.state is not None and claim.state.status is RunStatus.RUNNING


def test_a_claim_over_the_takeover_limit_journals_nothing_but_the_lease(
        queue_cp: BaseCheckpointer) -> None:
    run_id = effects.enqueue({}, checkpointer=queue_cp)
    with driver() as first, driver() as second:
        assert _claim(queue_cp, first, ttl=0.0, takeover_limit=0) is not None
        before = queue_cp.list_events(run_id)
        claim = _claim(queue_cp, second, takeover_limit=0)
        assert claim is not None and claim.takeovers == 1
        assert claim.state is None and claim.events == []  # the worker fails it instead
        assert queue_cp.list_events(run_id) == before
        failed = fail_run(effects, queue_cp, claim.lease, RuntimeError("too many"))
    assert failed.status is RunStatus.FAILED
    kinds = [str(e.kind) for e in queue_cp.list_events(run_id)]
    assert kinds == ["run.started", "run.resumed", "run.error"]
