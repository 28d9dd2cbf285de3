"""A SIGKILL never makes the agent pay for a committed model response twice, nor run a
completed tool call twice. Every run is a real child process talking HTTP to a real
server; the server's request count is the bill."""

from __future__ import annotations

import signal

from agent_helpers import Child, kinds, result_of, wait_for

from purpose_agent.agents.testing import OpenAICompatibleTestServer, tool_call


def test_kill_after_model_response_resume_sends_no_new_request_for_that_turn(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1")]},
               "Order A1 has shipped.")

    # The model's answer (call lookup_order) is committed, then the process dies on the
    # way into the tool, before its side effect.
    killed = child("run", "t-1", {"input": "Where is order A1?"}, kill_at="before:lookup_order")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert server.request_count == 1
    assert child.effects_lines() == []

    # A new process resumes: turn 1 is replayed from the journal, the tool runs once,
    # and only turn 2 is sent to the server.
    state = result_of(child("resume", "t-1"))
    assert state["status"] == "completed"
    assert state["data"]["support"] == "Order A1 has shipped."
    assert server.request_count == 2
    assert child.effects_lines() == ["lookup A1"]

    second = server.requests[1]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1_0",
                          "content": '{"order_id": "A1", "status": "shipped"}'}
    # The journal agrees with the server: two requests were ever made.
    store = child.store()
    assert [p["turn"] for p in kinds(store, "t-1", "model.request")] == [1, 2]
    messages = state["data"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]


def test_kill_after_tool_side_effect_runs_tool_again_but_not_the_model(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    """An ordinary tool is at-least-once: its result was not committed, so it runs again.
    The model response that asked for it is still never re-requested."""
    server.add({"tool_calls": [tool_call("lookup_order", order_id="B2")]}, "Shipped.")
    killed = child("run", "t-2", {"input": "B2?"}, kill_at="after:lookup_order")
    assert killed.returncode == -signal.SIGKILL
    state = result_of(child("resume", "t-2"))
    assert state["status"] == "completed"
    assert child.effects_lines() == ["lookup B2", "lookup B2"]
    assert server.request_count == 2


def test_at_most_once_tool_killed_mid_call_pauses_in_doubt_and_never_reruns(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    server.add({"tool_calls": [tool_call("charge", order_id="C3", amount=25)]}, "Charged.")
    killed = child("run", "t-3", {"input": "charge C3"}, kill_at="after:charge")
    assert killed.returncode == -signal.SIGKILL
    assert child.effects_lines() == ["charge C3 25.0"]

    paused = result_of(child("resume", "t-3"))
    assert paused["status"] == "paused"
    assert paused["pending"]["kind"] == "in_doubt"
    assert paused["pending"]["name"] == "tool:charge"
    assert child.effects_lines() == ["charge C3 25.0"]

    # A person checked the payment provider: it went through. Supply the result.
    state = result_of(child("resume", "t-3", {"answer": "charged 25.0"}))
    assert state["status"] == "completed"
    assert child.effects_lines() == ["charge C3 25.0"]
    assert server.request_count == 2
    assert server.requests[1]["messages"][-1]["content"] == "charged 25.0"


def test_kill_between_parallel_tool_calls_doubles_no_effect(
        child: Child, server: OpenAICompatibleTestServer) -> None:
    """One response asks for three calls, run two at a time under ``arun``: both lookups
    return and are committed while the charge (at most once) has made its effect and
    hangs; the process is killed there. Resumed in new processes (the sync driver, then
    the async one): the lookups are replayed, the charge is in doubt and never re-run,
    and the model reads the three results in the order it asked for them."""
    server.add({"tool_calls": [tool_call("lookup_order", order_id="A1", id="c-1"),
                               tool_call("charge", order_id="C3", amount=25, id="c-2"),
                               tool_call("lookup_order", order_id="B2", id="c-3")]},
               "Done.")
    running = child.start("arun", "t-4", {"input": "A1, B2, and charge C3"},
                          flow="support_parallel", hang_at="after:charge")
    try:
        store = child.store()
        wait_for(lambda: [s.name for s in store.load_steps("t-4", 1) if s.status == "done"
                          and s.name == "tool:lookup_order"] == ["tool:lookup_order"] * 2
                 and "charge C3 25.0" in child.effects_lines(),
                 what="both lookups committed while the charge hangs")
    finally:
        running.kill()
        running.communicate()
    assert running.returncode == -signal.SIGKILL
    assert sorted(child.effects_lines()) == ["charge C3 25.0", "lookup A1", "lookup B2"]

    paused = result_of(child("resume", "t-4", flow="support_parallel"))
    assert paused["status"] == "paused" and paused["pending"]["name"] == "tool:charge"
    state = result_of(child("aresume", "t-4", {"answer": "charged 25.0"},
                            flow="support_parallel"))
    assert state["status"] == "completed" and state["data"]["support"] == "Done."
    assert sorted(child.effects_lines()) == ["charge C3 25.0", "lookup A1", "lookup B2"]
    assert server.request_count == 2
    results = server.requests[1]["messages"][-3:]
    assert [(m["tool_call_id"], m["content"]) for m in results] == [
        ("c-1", '{"order_id": "A1", "status": "shipped"}'), ("c-2", "charged 25.0"),
        ("c-3", '{"order_id": "B2", "status": "shipped"}')]
