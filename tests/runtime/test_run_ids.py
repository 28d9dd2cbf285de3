"""Rule 7: a run id that could escape the store's directory is refused by every backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from purpose_agent.errors import InvalidRunId
from purpose_agent.runtime.checkpoint import validate_run_id
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.journal import Commit, Lease, StepRecord
from purpose_agent.runtime.state import RunState

BAD_IDS = {
    "parent": "../x",
    "deep-parent": "../../../../tmp/x",
    "absolute": "/abs",
    "slash": "a/b",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "hidden": ".x",
    "space": "a b",
    "newline": "a\nb",
    "129-chars": "r" * 129,
}
GOOD_IDS = ["r", "r" * 128, "ticket-42", "a.b:c@d=e+f-g_h", "2026-11-24T21:41:43Z"]


def _every_call(store, run_id: str) -> list:
    """Every store method that takes a run id, ready to be called with ``run_id``."""
    state = RunState(run_id=run_id)
    event = PAEvent(run_id=run_id, kind=EventKind.NODE_PROGRESS)
    return [
        lambda: store.save_event(event),
        lambda: store.save_snapshot(run_id, state),
        lambda: store.commit(run_id, Commit(events=[event], state=state, snapshot=True)),
        lambda: store.commit(run_id, Commit(steps=[StepRecord("k", 1, "n", 0, "s")])),
        lambda: store.load_latest(run_id),
        lambda: store.load_at(run_id, 0),
        lambda: store.list_events(run_id),
        lambda: store.list_history(run_id),
        lambda: store.load_steps(run_id, 1),
        lambda: store.next_seq(run_id),
        lambda: store.run_info(run_id),
        lambda: store.delete_run(run_id),
        lambda: store.acquire_lease(run_id, "me:1", 30),
        lambda: store.renew_lease(Lease(run_id, "me:1", 1, 0.0, 1), 30),
    ]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("run_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_a_bad_run_id_is_refused_by_every_method(store, tmp_path, run_id):
    store.save_event(PAEvent(run_id="existing", kind=EventKind.RUN_STARTED))
    before = _tree(tmp_path)
    for call in _every_call(store, run_id):
        with pytest.raises(InvalidRunId):
            call()
    assert _tree(tmp_path) == before, "nothing may be created for a refused id"
    assert store.list_runs() == ["existing"]


def test_nothing_is_created_outside_the_jsonl_directory(tmp_path):
    from purpose_agent.runtime.checkpoint import JSONLCheckpointer

    store = JSONLCheckpointer(tmp_path / "a" / "store")
    escapes = ["../x", "../../x", str(tmp_path / "abs"), "../store2/x", "x/../../y"]
    for run_id in escapes:
        for call in _every_call(store, run_id):
            with pytest.raises(InvalidRunId):
                call()
    assert _tree(tmp_path) == {"a", "a/store"}


@pytest.mark.parametrize("run_id", GOOD_IDS)
def test_ordinary_run_ids_are_accepted(store, run_id):
    assert validate_run_id(run_id) == run_id
    store.save_snapshot(run_id, RunState(run_id=run_id, data={"ok": True}))
    store.save_event(PAEvent(run_id=run_id, kind=EventKind.NODE_PROGRESS))
    assert store.load_latest(run_id).data == {"ok": True}
    assert store.list_runs() == [run_id]


def test_the_error_says_what_is_allowed():
    with pytest.raises(InvalidRunId, match="letters, digits"):
        validate_run_id("../x")
    with pytest.raises(InvalidRunId, match="limit is 128"):
        validate_run_id("x" * 129)
    with pytest.raises(InvalidRunId, match="non-empty string"):
        validate_run_id(42)
    with pytest.raises(ValueError):  # InvalidRunId is a ValueError for callers that expect one
        validate_run_id("")
