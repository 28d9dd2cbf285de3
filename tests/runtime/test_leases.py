"""Rule 3 at the store: leases, fencing, busy runs, dead and expired owners."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from purpose_agent.errors import LeaseError, RunBusyError, RunNotFound, RunStateError
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord, owner_id
from purpose_agent.runtime.owners import driver, parse_owner
from purpose_agent.runtime.state import RunState, RunStatus

HOST = owner_id().rpartition(":")[0]
ELSEWHERE = "other-host.example:4242"  # a live process on another machine, as far as we know


def _new_run(store, run_id: str = "r1") -> RunState:
    state = RunState(run_id=run_id, status=RunStatus.RUNNING, data={"n": 0})
    store.save_snapshot(run_id, state)
    store.save_event(create_event(run_id, EventKind.RUN_STARTED))
    return state


def _seen(store) -> tuple:
    info = store.run_info("r1").to_dict()
    return ([e.seq for e in store.list_events("r1")], store.load_latest("r1").to_dict(),
            store.list_history("r1"), info["owner"], info["lease_expires_at"])


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)  # exited and reaped by subprocess.run


# ── on every backend ────────────────────────────────────────────────────────────


def test_a_lease_needs_an_existing_run(store):
    with pytest.raises(RunNotFound):
        store.acquire_lease("nobody", "me:1", 30)
    assert store.list_runs() == []


def test_acquire_gives_an_increasing_fence_and_shows_the_owner(store):
    _new_run(store)
    before = time.time()
    lease = store.acquire_lease("r1", "me:1", 30)
    assert (lease.run_id, lease.owner, lease.fence, lease.next_seq) == ("r1", "me:1", 1, 2)
    assert before + 30 <= lease.expires_at <= time.time() + 30
    info = store.run_info("r1")
    assert (info.owner, info.lease_expires_at) == ("me:1", lease.expires_at)
    again = store.acquire_lease("r1", "me:1", 30)  # the owner itself may re-take it
    assert again.fence == 2


def test_a_live_owner_makes_a_second_acquirer_busy_and_nothing_is_written(store):
    _new_run(store)
    lease = store.acquire_lease("r1", ELSEWHERE, 60)
    seen = _seen(store)
    with pytest.raises(RunBusyError, match=re.escape(ELSEWHERE)):
        store.acquire_lease("r1", "me:1", 30)
    assert _seen(store) == seen
    store.commit("r1", Commit(events=[create_event("r1", EventKind.NODE_PROGRESS)],
                              fence=lease.fence))  # the owner's fence is still current
    assert store.next_seq("r1") == 3


def test_an_expired_lease_can_be_taken_and_the_old_owner_is_fenced_off(store):
    state = _new_run(store)
    old = store.acquire_lease("r1", ELSEWHERE, 0)  # expired the moment it was granted
    new = store.acquire_lease("r1", "me:1", 30)
    assert new.fence == old.fence + 1
    seen = _seen(store)
    state.current_step = 1
    stale = Commit(events=[create_event("r1", EventKind.NODE_COMPLETED)], state=state,
                   delta=Delta({"n": ["set", 1]}, node="a"), snapshot=True, fence=old.fence)
    with pytest.raises(LeaseError):
        store.commit("r1", stale)
    assert _seen(store) == seen
    with pytest.raises(LeaseError):
        store.renew_lease(old, 30)
    store.commit("r1", Commit(events=[create_event("r1", EventKind.NODE_COMPLETED)],
                              fence=new.fence))


@pytest.mark.parametrize("outcome", [RunStatus.COMPLETED, RunStatus.PAUSED, RunStatus.FAILED])
def test_a_stale_owner_can_neither_finish_pause_nor_fail_the_run(store, outcome):
    """Completion, a pause and a failure are commits like any other: fenced, and a stale
    one writes nothing (its events, state, step records and lease release all refused)."""
    state = _new_run(store)
    old = store.acquire_lease("r1", ELSEWHERE, 0)
    store.acquire_lease("r1", "me:1", 30)
    seen = _seen(store)
    state.status, state.current_step = outcome, 1
    final = Commit(events=[create_event("r1", EventKind.RUN_FINISHED)], state=state,
                   delta=Delta({"n": ["set", 9]}, node="a"), fence=old.fence, release=True,
                   steps=[StepRecord("k", 1, "a", 0, "s", result=1)])
    with pytest.raises(LeaseError):
        store.commit("r1", final)
    assert _seen(store) == seen
    assert store.run_info("r1").status == RunStatus.RUNNING
    assert store.load_steps("r1", 1) == []


def test_renew_extends_the_lease(store):
    _new_run(store)
    lease = store.acquire_lease("r1", "me:1", 1)
    renewed = store.renew_lease(lease, 120)
    assert renewed.fence == lease.fence and renewed.expires_at > lease.expires_at + 100
    assert store.run_info("r1").lease_expires_at == renewed.expires_at
    with pytest.raises(RunBusyError):
        store.acquire_lease("r1", ELSEWHERE, 30)


def test_a_commit_can_release_the_lease(store):
    state = _new_run(store)
    lease = store.acquire_lease("r1", ELSEWHERE, 60)
    state.status = RunStatus.PAUSED
    store.commit("r1", Commit(state=state, fence=lease.fence, release=True))
    info = store.run_info("r1")
    assert (info.owner, info.lease_expires_at, info.status) == (None, None, RunStatus.PAUSED)
    assert store.acquire_lease("r1", "me:1", 30).fence == lease.fence + 1


def test_the_lease_of_a_dead_process_on_this_host_can_be_taken_at_once(store):
    _new_run(store)
    dead = f"{HOST}:{_dead_pid()}"
    store.acquire_lease("r1", dead, 3600)
    assert store.acquire_lease("r1", "me:1", 30).owner == "me:1"


def test_a_live_process_on_this_host_keeps_its_lease(store):
    _new_run(store)
    store.acquire_lease("r1", f"{HOST}:{os.getppid()}", 3600)
    with pytest.raises(RunBusyError):
        store.acquire_lease("r1", "me:1", 30)


def test_a_driver_token_does_not_change_whether_another_process_is_alive(store):
    _new_run(store)
    store.acquire_lease("r1", f"{HOST}:{_dead_pid()}/0a1b2c", 3600)
    taken = store.acquire_lease("r1", f"{HOST}:{os.getppid()}/3d4e5f", 3600)  # at once
    with pytest.raises(RunBusyError):  # a live process, whatever driver token it holds
        store.acquire_lease("r1", "me:1", 30)
    assert store.run_info("r1").owner == taken.owner


def test_two_drivers_of_this_process_are_two_owners(store):
    _new_run(store)
    with driver() as first, driver() as second:
        assert first != second and parse_owner(first)[:2] == parse_owner(second)[:2]
        lease = store.acquire_lease("r1", first, 3600)
        seen = _seen(store)
        with pytest.raises(RunBusyError, match="another driver in this process"):
            store.acquire_lease("r1", second, 30)
        assert _seen(store) == seen
        assert store.acquire_lease("r1", first, 3600).fence == lease.fence + 1  # re-entrant
    with driver() as third:  # ``first`` has ended: its lease is taken at once
        assert store.acquire_lease("r1", third, 30).owner == third


def test_owner_names_of_this_and_the_previous_release_parse():
    assert parse_owner("h.example:42/9f8e") == ("h.example", 42, "9f8e")
    assert parse_owner("h.example:42") == ("h.example", 42, None)  # no token: a whole process
    assert parse_owner("weird") == ("", None, None)
    assert parse_owner(owner_id()) == (HOST, os.getpid(), None)


def test_a_commit_can_take_the_lease_or_refuse_if_busy(store):
    state = _new_run(store)
    result = store.commit("r1", Commit(state=state, acquire=("me:1", 30),
                                       events=[create_event("r1", EventKind.RUN_RESUMED)]))
    assert result.lease is not None and result.lease.owner == "me:1"
    assert store.run_info("r1").owner == "me:1"
    seen = _seen(store)
    with pytest.raises(RunBusyError):
        store.commit("r1", Commit(state=state, acquire=(ELSEWHERE, 30),
                                  events=[create_event("r1", EventKind.RUN_RESUMED)]))
    assert _seen(store) == seen


def test_a_creating_commit_refuses_an_existing_run(store):
    state = _new_run(store)
    seen = _seen(store)
    with pytest.raises(RunStateError, match="already exists"):
        store.commit("r1", Commit(state=state, create=True, snapshot=True,
                                  events=[create_event("r1", EventKind.RUN_STARTED)]))
    assert _seen(store) == seen
    other = RunState(run_id="r2")
    store.commit("r2", Commit(state=other, create=True, snapshot=True))
    assert store.load_latest("r2") is not None


def test_a_cancel_request_reaches_the_owner_through_its_next_commit(store):
    _new_run(store)
    lease = store.acquire_lease("r1", "me:1", 30)
    assert store.commit("r1", Commit(fence=lease.fence)).cancel_requested is False
    store.request_cancel("r1")
    assert store.run_info("r1").cancel_requested is True
    assert store.commit("r1", Commit(fence=lease.fence)).cancel_requested is True


# ── with real processes, on the stores that live in files ───────────────────────

HOLDER = """
    import sys
    from purpose_agent.errors import LeaseError
    from purpose_agent.runtime.checkpoint import open_checkpointer
    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.journal import Commit, owner_id

    cp = open_checkpointer(sys.argv[1])
    lease = cp.acquire_lease("r1", owner_id(), float(sys.argv[2]))
    print(lease.fence, owner_id(), flush=True)
    for line in sys.stdin:
        try:
            if line.strip() == "commit":
                cp.commit("r1", Commit(fence=lease.fence, events=[
                    create_event("r1", EventKind.NODE_PROGRESS, by="holder")]))
            else:
                lease = cp.renew_lease(lease, 60)
            print("ok", flush=True)
        except LeaseError:
            print("LeaseError", flush=True)
"""


def _holder(spawn, shared, ttl: float):
    _new_run(shared.store)
    child = spawn(HOLDER, shared.url, str(ttl))
    fence, owner = child.readline().split()
    return child, int(fence), owner


def test_a_live_owner_process_makes_the_run_busy_until_it_is_killed(spawn, shared):
    store = shared.store
    child, fence, owner = _holder(spawn, shared, 3600)
    assert owner == f"{HOST}:{child.proc.pid}"
    with pytest.raises(RunBusyError, match=re.escape(owner)):
        store.acquire_lease("r1", owner_id(), 30)
    assert store.run_info("r1").owner == owner
    child.send("commit")
    assert child.readline() == "ok"
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait()
    lease = shared.reopen().acquire_lease("r1", owner_id(), 30)  # at once, no expiry wait
    assert lease.fence == fence + 1 and lease.next_seq == 3


def test_a_killed_owner_not_yet_reaped_counts_as_dead(spawn, shared):
    child, fence, _owner = _holder(spawn, shared, 3600)
    child.proc.send_signal(signal.SIGKILL)
    # Wait until it is a zombie without reaping it (no sleep, no polling).
    os.waitid(os.P_PID, child.proc.pid, os.WEXITED | os.WNOWAIT)
    assert shared.store.acquire_lease("r1", owner_id(), 30).fence == fence + 1


def test_an_owner_that_wakes_up_after_a_takeover_is_refused(spawn, shared):
    store = shared.store
    child, fence, _owner = _holder(spawn, shared, 0)  # its lease has already expired
    taken = store.acquire_lease("r1", owner_id(), 30)
    assert taken.fence == fence + 1
    seen = _seen(store)
    child.send("commit")
    assert child.readline() == "LeaseError"
    child.send("renew")
    assert child.readline() == "LeaseError"
    assert _seen(store) == seen
    child.finish()


FROZEN_MID_COMMIT = """
    import os, signal, sys
    from purpose_agent.runtime.checkpoint import JSONLCheckpointer
    from purpose_agent.runtime.events import EventKind, create_event
    from purpose_agent.runtime.journal import Commit

    cp = JSONLCheckpointer(sys.argv[1])
    real_fsync = os.fsync

    def frozen_fsync(fd):  # the process stops for good inside its commit, lock held
        os.kill(os.getpid(), signal.SIGSTOP)
        real_fsync(fd)

    os.fsync = frozen_fsync
    cp.commit("r1", Commit(events=[create_event("r1", EventKind.NODE_PROGRESS, by="frozen")]))
    os.fsync = real_fsync
    print("committed", flush=True)
"""


def test_jsonl_a_process_frozen_mid_commit_does_not_hang_the_others(spawn, tmp_path):
    from purpose_agent.errors import StoreError
    from purpose_agent.runtime.checkpoint import JSONLCheckpointer

    store = JSONLCheckpointer(tmp_path / "store", lock_timeout=0.5)
    _new_run(store)
    child = spawn(FROZEN_MID_COMMIT, str(tmp_path / "store"))
    os.waitid(os.P_PID, child.proc.pid, os.WSTOPPED | os.WNOWAIT)  # frozen inside the commit
    journal = re.escape(str(tmp_path / "store" / "r1.jsonl"))
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"{journal}.*process {child.proc.pid}"):
        store.acquire_lease("r1", owner_id(), 30)
    with pytest.raises(StoreError, match=journal):
        store.list_events("r1")  # readers too: they would read a half-made commit
    assert time.monotonic() - started < 5
    child.proc.send_signal(signal.SIGCONT)
    assert child.readline() == "committed"
    assert [e.payload.get("by") for e in store.list_events("r1")][-1] == "frozen"
    assert store.acquire_lease("r1", owner_id(), 30).fence == 1
