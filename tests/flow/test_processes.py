"""Human approval, in-doubt steps, busy runs and cancellation across real processes."""

from __future__ import annotations

import json
import signal
import time

from crash_harness import Child, result_of

from purpose_agent.runtime.events import EventKind


def test_hitl_pause_in_one_process_edit_and_resume_in_another(child: Child) -> None:
    paused = result_of(child("run", "review", "t1", {"ticket": "refund"}))
    assert paused["status"] == "paused"
    assert paused["pending"]["kind"] == "interrupt"
    assert paused["pending"]["payload"]["question"] == "Send this reply?"

    # A person reads the state from the store, edits the draft and answers.
    cp = child.store()
    seen = cp.load_latest("t1")
    assert seen.pending["payload"]["draft"] == "draft for refund: DRAFT"
    requests = cp.list_events("t1", kinds=EventKind.HITL_REQUEST)
    assert requests[0].payload["payload"]["draft"] == "draft for refund: DRAFT"

    done = result_of(child("resume", "review", "t1",
                           {"answer": "yes", "update": {"draft": "edited by a person"}}))
    assert done["status"] == "completed"
    assert done["data"]["approved"] is True
    # The edit reached the next node, and nothing before the interrupt ran twice.
    assert child.effects_lines() == ["draft", "prepare", "send:edited by a person"]
    responses = cp.list_events("t1", kinds=EventKind.HITL_RESPONSE)
    assert responses[0].payload["answer"] == "yes"


def test_a_rejection_routes_to_the_end(child: Child) -> None:
    result_of(child("run", "review", "t1", {"ticket": "x"}))
    done = result_of(child("resume", "review", "t1", {"answer": "no"}))
    assert done["status"] == "completed" and done["data"]["approved"] is False
    assert "send" not in " ".join(child.effects_lines())


def test_resuming_a_paused_run_without_an_answer_is_refused(child: Child) -> None:
    result_of(child("run", "review", "t1", {"ticket": "x"}))
    before = len(child.store().list_events("t1"))
    out = json.loads(child("resume", "review", "t1").stdout)
    assert out["error"] == "RunStateError" and "answer" in out["message"]
    assert child.store().load_latest("t1").status == "paused"
    assert len(child.store().list_events("t1")) == before


def test_at_most_once_step_killed_mid_call_pauses_in_doubt(child: Child) -> None:
    killed = child("run", "payments", "p1", {"amount": 42}, crash="pay:amo")
    assert killed.returncode == -signal.SIGKILL
    assert child.effects_lines() == ["charge.42"]

    # Resume never re-runs the charge on its own: the run pauses, naming the step.
    out = result_of(child("resume", "payments", "p1"))
    assert out["status"] == "paused"
    assert out["pending"]["kind"] == "in_doubt"
    assert out["pending"]["name"] == "charge_card"
    assert child.effects_lines() == ["charge.42"]

    # Resuming again without a decision is refused, naming the step; nothing is written.
    refused = json.loads(child("resume", "payments", "p1").stdout)
    assert refused["error"] == "StepInDoubt" and "charge_card" in refused["message"]
    assert child.store().run_info("p1").owner is None  # the lease was handed back

    # A person checked the payment provider: it went through. They supply the result.
    done = result_of(child("resume", "payments", "p1", {"answer": "charged 42 (checked)"}))
    assert done["status"] == "completed"
    assert done["data"]["receipt"] == "charged 42 (checked)"
    assert child.effects_lines() == ["charge.42", "notify"]


def test_in_doubt_step_may_be_retried_explicitly(child: Child) -> None:
    child("run", "payments", "p1", {"amount": 7}, crash="pay:amo")
    assert result_of(child("resume", "payments", "p1"))["status"] == "paused"
    done = result_of(child("resume", "payments", "p1", {"retry_in_doubt": True}))
    assert done["status"] == "completed" and done["data"]["receipt"] == "charged 7"
    assert child.effects_lines() == ["charge.7", "charge.7", "notify"]


def wait_inside(proc) -> None:
    line = proc.stdout.readline()
    assert line.strip() == "inside", (line, proc.stderr.read() if proc.poll() else "")


def test_second_resumer_of_a_live_run_is_refused_and_the_owner_finishes(child: Child) -> None:
    owner = child.start("run", "blocking", "b1")
    try:
        wait_inside(owner)
        cp = child.store()
        before = [e.to_dict() for e in cp.list_events("b1")]
        refused = child("resume", "blocking", "b1")
        assert refused.returncode == 3, refused.stdout
        assert "being advanced by" in json.loads(refused.stdout)["message"]
        assert [e.to_dict() for e in cp.list_events("b1")] == before  # nothing written
        owner.stdin.write("go\n")
        owner.stdin.flush()
        out, _err = owner.communicate(timeout=60)
    finally:
        owner.kill()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    assert child.effects_lines() == ["first", "second"]


def test_dead_owner_on_this_host_is_taken_over_at_once(child: Child) -> None:
    owner = child.start("run", "blocking", "b1")
    wait_inside(owner)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    info = child.store().run_info("b1")
    assert info.owner is not None and info.lease_expires_at > time.time()  # still "valid"
    proc = child.start("resume", "blocking", "b1")
    wait_inside(proc)
    out, _ = proc.communicate("go\n", timeout=60)
    assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"
    assert child.effects_lines() == ["first", "second"]


def test_a_stalled_owner_is_fenced_off_after_another_takes_over(sqlite_child: Child) -> None:
    child = sqlite_child
    owner = child.start("run", "blocking", "b1")
    try:
        wait_inside(owner)
        owner.send_signal(signal.SIGSTOP)  # a long GC pause: alive, but no heartbeat
        cp = child.store()
        expires = cp.run_info("b1").lease_expires_at
        while time.time() <= expires:  # wait out the 1 s lease (time itself is the subject)
            time.sleep(0.05)
        taker = child.start("resume", "blocking", "b1")
        wait_inside(taker)
        out, _ = taker.communicate("go\n", timeout=60)
        assert json.loads(out.strip().splitlines()[-1])["status"] == "completed"
        events_after_takeover = [e.to_dict() for e in cp.list_events("b1")]

        owner.send_signal(signal.SIGCONT)
        out, _ = owner.communicate("go\n", timeout=60)
        refused = json.loads(out.strip().splitlines()[-1])
        assert refused["error"] == "LeaseError"
        assert [e.to_dict() for e in cp.list_events("b1")] == events_after_takeover
        assert cp.load_latest("b1").status == "completed"
    finally:
        owner.kill()


def test_cancel_of_a_live_run_stops_it_at_the_next_node_boundary(child: Child) -> None:
    from purpose_agent.flow import cancel_run

    owner = child.start("run", "blocking", "b1")
    try:
        wait_inside(owner)
        state = cancel_run(child.store(), "b1")
        assert state.status == "running"  # requested; the owner stops at the boundary
        out, _ = owner.communicate("go\n", timeout=60)
    finally:
        owner.kill()
    assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled"
    assert child.effects_lines() == ["first"]  # the second node never started
    kinds = [e.kind for e in child.store().list_events("b1")]
    assert kinds[-1] == EventKind.RUN_CANCELLED
