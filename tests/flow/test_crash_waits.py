"""Durable waits survive SIGKILL: a process killed in a sleep, in a message wait, or
during a retry's backoff is resumed in a new process; no effect is doubled, no message
lost or delivered twice, and timers end at their journaled time, never later by the
downtime and never twice. On SQLite, JSONL and PostgreSQL (the ``child`` fixture)."""

from __future__ import annotations

import signal
import time

import pytest
from crash_harness import HERE, Child, result_of

from purpose_agent.runtime.events import EventKind

WAIT_CHILD = HERE / "wait_child.py"


@pytest.fixture
def wchild(child: Child) -> Child:
    child.script = WAIT_CHILD
    return child


def effects(child: Child) -> list[tuple[str, float]]:
    out = []
    for line in child.effects_lines():
        label, _, stamp = line.rpartition(" ")
        out.append((label, float(stamp)))
    return out


def labels(child: Child) -> list[str]:
    return [label for label, _ in effects(child)]


def wake_time(child: Child, run_id: str) -> float:
    timers = child.store().list_events(run_id, kinds=EventKind.TIMER_SET)
    assert len(timers) == 1, "the wake-up time is journaled once, by the first process"
    return float(timers[0].payload["wake_at"])


def wait_for_clock(when: float) -> None:
    # Simulated downtime: the run stays dead until its wake-up time has passed (waiting
    # for a time, not for another process).
    time.sleep(max(0.0, when - time.time()) + 0.05)


@pytest.mark.parametrize("flow", ["sleeper", "asleeper"])
def test_killed_in_a_sleep_wakes_at_the_journaled_time(wchild: Child, flow: str) -> None:
    action = "arun" if flow == "asleeper" else "run"
    killed = wchild(action, flow, "t1", {"seconds": 3.0}, crash="timer.set")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    wake_at = wake_time(wchild, "t1")
    assert labels(wchild) == ["before"]
    out = result_of(wchild(action.replace("run", "resume"), flow, "t1"))
    assert out["status"] == "completed"
    assert labels(wchild) == ["before", "after"]  # "before" replayed, not run again
    after = dict(effects(wchild))["after"]
    restarted = [e for e in wchild.store().list_events("t1")
                 if e.kind == EventKind.NODE_STARTED][-1].ts
    # Never early; and it waited only for what was left of the journaled time (the new
    # process may itself start after it, on a loaded machine).
    assert wake_at <= after < max(wake_at, restarted) + 1.0, (after - wake_at)
    assert wake_time(wchild, "t1") == wake_at  # the resumed node did not set a new timer


def test_a_sleep_that_ended_while_the_run_was_dead_is_not_slept_again(wchild: Child) -> None:
    wchild("run", "sleeper", "t1", {"seconds": 2.0}, crash="timer.set")
    wake_at = wake_time(wchild, "t1")
    wait_for_clock(wake_at)
    result_of(wchild("resume", "sleeper", "t1"))
    events = wchild.store().list_events("t1")
    restarted = [e for e in events if e.kind == EventKind.NODE_STARTED][-1]
    after = dict(effects(wchild))["after"]
    assert after - restarted.ts < 1.0  # no second 2 s sleep after the node restarted
    assert labels(wchild) == ["before", "after"]


@pytest.mark.parametrize("crash", ["run.paused", "receive", "message.received"])
def test_messages_sent_while_the_run_is_dead_are_delivered_once_in_order(
        wchild: Child, crash: str) -> None:
    """Killed while parked (or right after taking a message from the mailbox, before
    journaling it, or right after journaling it): the messages sent meanwhile reach the
    resumed run, in order, each once."""
    if crash == "run.paused":  # killed right after parking (PAUSED, waiting for "note")
        killed = wchild("run", "waiter", "w1", crash=crash)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    else:
        cp = wchild.store()
        killed = wchild("run", "waiter", "w1", crash=crash)
        assert killed.returncode == 0  # nothing to receive yet: it parked
        cp.send_message("w1", "note", "one")  # a message but no wake-up: lands while dead
        killed = wchild("resume", "waiter", "w1", crash=crash)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    cp = wchild.store()
    if crash == "run.paused":
        cp.send_message("w1", "note", "one")
    cp.send_message("w1", "note", "two", dedup_key="k2")
    assert cp.send_message("w1", "note", "two again", dedup_key="k2") is None  # dropped
    out = result_of(wchild("resume", "waiter", "w1"))
    assert out["status"] == "completed", out
    assert (out["data"]["first"], out["data"]["second"]) == ("one", "two")
    assert out["data"]["late"] == "timed out"
    assert labels(wchild) == ["before", "got:one", "got:two"]
    delivered = [(m.payload, m.delivered_to is not None) for m in cp.list_messages("w1")]
    assert delivered == [("one", True), ("two", True)]
    received = cp.list_events("w1", kinds=EventKind.MESSAGE_RECEIVED)
    assert [e.payload["message"] for e in received] == [1, 2]


def test_a_send_from_another_process_resumes_an_in_process_run(wchild: Child) -> None:
    assert result_of(wchild("run", "waiter", "w1"))["pending"]["topic"] == "note"
    first = result_of(wchild("send", "waiter", "w1", ["note", "one", None]))
    assert first["stored"] and first["pending"]["topic"] == "note"  # waits for the second
    second = result_of(wchild("send", "waiter", "w1", ["note", "two", None]))
    assert second["status"] == "completed"
    assert second["data"]["second"] == "two"


@pytest.mark.parametrize("flow,label", [("retrier", "flaky"), ("node-retrier", "node")])
def test_killed_during_a_retry_backoff_resumes_the_wait_not_the_count(
        wchild: Child, flow: str, label: str) -> None:
    kind = "step.failed" if flow == "retrier" else "node.failed"
    killed = wchild("run", flow, "b1", crash=kind)  # right after attempt 1's backoff is journaled
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    failed = wchild.store().list_events("b1", kinds=kind)
    assert [e.payload["attempt"] for e in failed] == [1]
    journaled_end = failed[0].ts + failed[0].payload["retry_in"]
    out = result_of(wchild("resume", flow, "b1"))
    assert out["status"] == "completed", out
    calls = [stamp for name, stamp in effects(wchild) if name == label]
    assert len(calls) == 3  # attempts 1, 2 and 3: the count went on from 1, not from 0
    assert calls[1] >= journaled_end - 0.05  # the resumed wait ended at its journaled end
    attempts = [e.payload["attempt"] for e in wchild.store().list_events("b1", kinds=kind)]
    assert attempts == [1, 2]


def test_an_idempotency_key_is_the_same_when_a_step_runs_again(wchild: Child) -> None:
    killed = wchild("run", "charger", "c1", crash="in-step")
    assert killed.returncode == -signal.SIGKILL
    out = result_of(wchild("resume", "charger", "c1"))
    keys = [name.split(" ", 1)[1] for name in labels(wchild)]
    assert len(keys) == 2 and keys[0] == keys[1] == out["data"]["key"]
    assert keys[0].startswith("c1:")




def test_killed_between_fan_out_items_runs_only_the_unfinished_ones(wchild: Child) -> None:
    killed = wchild("run", "fanout", "f1", crash="step.completed#3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    committed = {e.payload["result"] for e in
                 wchild.store().list_events("f1", kinds=EventKind.STEP_COMPLETED)}
    assert len(committed) == 3
    out = result_of(wchild("resume", "fanout", "f1"))
    assert out["data"]["results"] == [f"item{n}" for n in range(6)]  # input order
    done = labels(wchild)
    for item in committed:  # journaled before the crash: never run again
        assert done.count(item) == 1, done
    assert set(done) == {f"item{n}" for n in range(6)}


@pytest.mark.parametrize("crash", ["child.started", "run.finished", "child.finished#1"])
def test_killed_between_children_never_starts_a_second_child(wchild: Child, crash: str) -> None:
    """Killed right after a child's id was journaled (before the child exists), right
    after the first child finished (before the parent journaled it), or right after the
    parent journaled it: the resumed parent starts no child twice, and each child's
    effect happened once."""
    killed = wchild("run", "family", "fam", crash=crash)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    out = result_of(wchild("resume", "family", "fam"))
    assert out["status"] == "completed", out
    assert out["data"]["outs"] == ["kid1", "kid2"]
    assert sorted(labels(wchild)) == ["kid1", "kid2"]
    cp = wchild.store()
    infos = [i for i in cp.list_run_infos() if i.run_id != "fam"]
    assert sorted(i.run_id for i in infos) == ["fam.c1-0", "fam.c1-1"]
    for info in infos:
        started = cp.list_events(info.run_id, kinds=EventKind.RUN_STARTED)
        assert len(started) == 1
