"""The store contract's shared rules: one meaning for every argument and rule, on every
backend (see conftest.BACKENDS), because the base class decides them once and a store
only stores.

Each case here once had a store that answered differently from the others.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from purpose_agent.errors import LeaseError, RunNotFound, SerializationError
from purpose_agent.runtime.checkpoint import (
    BaseCheckpointer,
    Checkpointer,
    InMemoryCheckpointer,
)
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import RunState, RunStatus

PROGRESS = EventKind.NODE_PROGRESS

# Exactly what a store must provide: storage, never policy.
PRIMITIVES = {
    "_write", "_latest_snapshot", "_deltas", "_history", "_commits_at", "_event_batches",
    "_step_records", "_run_infos", "_renew_lease", "_request_cancel",
    "next_seq", "run_info", "delete_run",
    "_send_message", "_receive_message", "_message_rows",  # the runs' mailboxes
}


# ── the contract is enforced at construction ───────────────────────────────────


def test_the_abstract_methods_are_exactly_the_storage_primitives():
    assert BaseCheckpointer.__abstractmethods__ == PRIMITIVES
    assert Checkpointer is BaseCheckpointer  # the earlier name, kept for existing imports


@pytest.mark.parametrize("missing", sorted(PRIMITIVES))
def test_a_store_missing_one_primitive_fails_at_construction_naming_it(missing):
    methods = {name: getattr(InMemoryCheckpointer, name)
               for name in PRIMITIVES - {missing}}
    methods["__init__"] = InMemoryCheckpointer.__init__
    partial = type("PartialStore", (BaseCheckpointer,), methods)
    with pytest.raises(TypeError, match=rf"abstract method.*\b{missing}\b"):
        partial()


def test_every_backend_is_a_base_checkpointer(store):
    assert isinstance(store, BaseCheckpointer)


# ── limits, seqs, kinds and statuses mean the same everywhere ──────────────────


def _events(store, n: int = 5) -> None:
    for i in range(n):
        store.save_event(create_event("r1", PROGRESS if i % 2 == 0 else EventKind.STEP_STARTED))


def _runs(store) -> None:
    for run_id, status in (("a", RunStatus.COMPLETED), ("b", RunStatus.PAUSED),
                           ("c", RunStatus.COMPLETED)):
        store.save_snapshot(run_id, RunState(run_id=run_id, status=status))


@pytest.mark.parametrize("limit", [-1, -5, 1.5, "2", True])
def test_a_limit_that_is_not_none_or_a_whole_number_from_zero_is_refused(store, limit):
    _events(store)
    _runs(store)
    with pytest.raises(ValueError, match="limit"):
        store.list_events("r1", limit=limit)
    with pytest.raises(ValueError, match="limit"):
        store.list_run_infos(limit=limit)


def test_limit_none_is_everything_and_zero_is_nothing(store):
    _events(store)
    _runs(store)
    assert [e.seq for e in store.list_events("r1", limit=None)] == [1, 2, 3, 4, 5]
    assert store.list_events("r1", limit=0) == []
    assert [e.seq for e in store.list_events("r1", limit=5)] == [1, 2, 3, 4, 5]
    assert [e.seq for e in store.list_events("r1", limit=9)] == [1, 2, 3, 4, 5]
    assert len(store.list_run_infos(limit=None)) == 4
    assert store.list_run_infos(limit=0) == []
    assert [i.run_id for i in store.list_run_infos(status="completed", limit=1)] == ["c"]


def test_a_since_seq_below_zero_reads_from_the_start(store):
    _events(store)
    assert [e.seq for e in store.list_events("r1", since_seq=-3)] == [1, 2, 3, 4, 5]


def test_kinds_may_be_one_kind_or_several_and_none_of_no_kinds(store):
    _events(store)
    assert [e.seq for e in store.list_events("r1", kinds=PROGRESS)] == [1, 3, 5]
    assert [e.seq for e in store.list_events("r1", kinds=str(PROGRESS))] == [1, 3, 5]
    assert [e.seq for e in store.list_events("r1", kinds=(PROGRESS,), limit=2)] == [1, 3]
    assert store.list_events("r1", kinds=[]) == []


def test_an_unknown_status_is_refused_naming_the_statuses(store):
    _runs(store)
    with pytest.raises(ValueError, match="completed"):
        store.list_runs(status="finished")
    with pytest.raises(ValueError, match="completed"):
        store.list_run_infos(status="finished", limit=1)
    assert store.list_runs(status=RunStatus.PAUSED) == store.list_runs(status="paused") == ["b"]


# ── the latest record of a key wins ────────────────────────────────────────────


def test_a_step_key_recorded_again_belongs_to_its_latest_record_only(store):
    store.commit("r1", Commit(steps=[StepRecord("k", 1, "n", 0, "s", status="started")]))
    store.commit("r1", Commit(steps=[StepRecord("j", 1, "n", 1, "t", result=1)]))
    store.commit("r1", Commit(steps=[StepRecord("k", 2, "m", 0, "s", result="late")]))
    assert [r.key for r in store.load_steps("r1", 1)] == ["j"]
    assert [(r.key, r.result) for r in store.load_steps("r1", 2)] == [("k", "late")]


# ── the node-version rule: which state load_at returns ─────────────────────────


def test_load_at_a_step_is_the_commit_that_completed_that_node_execution(store):
    state = RunState(run_id="r1", status=RunStatus.RUNNING, data={"n": 0})
    store.commit("r1", Commit(state=state, delta=Delta(), snapshot=True))
    state.status = RunStatus.PAUSED  # a pause before node 1 completed: not node 1's state
    state.current_step = 1
    store.commit("r1", Commit(state=state, delta=Delta({"n": ["set", 1]})))
    state.status = RunStatus.RUNNING
    store.commit("r1", Commit(state=state, delta=Delta({"n": ["set", 2]}, node="a")))
    store.commit("r1", Commit(state=state, delta=Delta({"n": ["set", 3]}, node="b")))
    assert store.load_at("r1", 0).data == {"n": 0}
    assert store.load_at("r1", 1).data == {"n": 2}
    assert store.load_at("r1", 2) is None


# ── leases: one policy ──────────────────────────────────────────────────────────


def test_lease_answers_are_the_same_on_every_store(store):
    store.save_snapshot("r1", RunState(run_id="r1", status=RunStatus.RUNNING))
    first = store.acquire_lease("r1", "other-host.example:1", 60)
    again = store.acquire_lease("r1", "other-host.example:1", 60)  # the owner itself
    assert (first.fence, again.fence, again.next_seq) == (1, 2, 1)
    with pytest.raises(LeaseError, match="lost"):
        store.renew_lease(first, 30)  # an older fence of the same owner
    with pytest.raises(LeaseError, match="lost"):
        store.renew_lease(replace(again, owner="x.example:2"), 30)  # the fence, not the owner
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease("r1", "other-host.example:1", -1)
    assert store.run_info("r1").owner == "other-host.example:1"


def test_cancelling_or_leasing_a_missing_run_is_run_not_found_and_writes_nothing(store):
    with pytest.raises(RunNotFound, match="nobody"):
        store.request_cancel("nobody")
    with pytest.raises(RunNotFound, match="nobody"):
        store.acquire_lease("nobody", "me.example:1", 30)
    assert store.list_runs() == [] and store.next_seq("nobody") == 1


# ── the time of a commit ────────────────────────────────────────────────────────


def test_encoding_a_commit_changes_nothing_it_was_given():
    from purpose_agent.runtime.checkpoint._prepare import prepare

    state = RunState(run_id="r1", status=RunStatus.RUNNING, updated_at=5.0)
    prepared = prepare("r1", Commit(state=state, delta=Delta(), snapshot=True))
    assert state.updated_at == 5.0
    assert prepared.header is not None and prepared.header["updated_at"] == 5.0
    stamped = prepare("r1", Commit(state=state, delta=Delta(), snapshot=True), now=9.0)
    assert state.updated_at == 5.0
    assert stamped.header is not None and stamped.header["updated_at"] == 9.0
    assert '"updated_at":9.0' in (stamped.snapshot_json or "")


def test_a_commit_stamps_its_time_once_it_lands_and_a_refused_one_leaves_it(store):
    state = RunState(run_id="r1", status=RunStatus.RUNNING, updated_at=5.0)
    store.commit("r1", Commit(state=state, delta=Delta(), snapshot=True))
    stored = store.load_latest("r1").updated_at
    assert stored > 5.0 and state.updated_at == stored  # the caller's copy matches
    state.updated_at = 6.0
    state.data["bad"] = {1, 2}  # not JSON: refused before anything is written
    with pytest.raises(SerializationError):
        store.commit("r1", Commit(state=state, delta=Delta(), snapshot=True))
    assert state.updated_at == 6.0
    assert store.load_latest("r1").updated_at == stored
