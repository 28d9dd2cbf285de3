"""A streaming agent's answer reaches the run's live readers while the model streams:
``flow.stream(run_id)`` in process, ``flow.astream(run_id)`` in the event loop that runs
the flow, ``purpose-agent events --follow`` in another process, and on PostgreSQL in a
process that does not share this host's live files. The server holds each stream after its first pieces until the reader has
seen them, so a reader that only got them at the end would fail the run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from agent_helpers import API_KEY, Child, wait_for

from purpose_agent import END, Flow
from purpose_agent.agents import Agent, OpenAIModel
from purpose_agent.agents.testing import OpenAICompatibleTestServer
from purpose_agent.flow.streaming import LiveItem
from purpose_agent.runtime.checkpoint import BaseCheckpointer, open_checkpointer
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.live import LIVE_DIR_ENV

ANSWER = "Your order A1 has shipped today."
SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))


def _flow(server: OpenAICompatibleTestServer) -> Flow:
    flow = Flow("live")
    flow.add(Agent("support", OpenAIModel("test-model", base_url=server.url,
                                          api_key=API_KEY, max_retries=0),
                   "Answer.", stream=True))
    flow.edge("support", END)
    return flow


def _run_in_thread(flow: Flow, store: BaseCheckpointer, run_id: str) -> threading.Thread:
    thread = threading.Thread(target=flow.run, args=({"input": "Where is A1?"},),
                              kwargs={"checkpointer": store, "run_id": run_id}, daemon=True)
    thread.start()
    return thread


def test_flow_stream_yields_tokens_while_the_model_streams_then_the_events(
        store: BaseCheckpointer, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "live"))
    with OpenAICompatibleTestServer([{"content": ANSWER, "hold_after": 3}],
                                    together_timeout=60.0) as server:
        flow = _flow(server)
        runner = _run_in_thread(flow, store, "l-1")
        seen: list[PAEvent | LiveItem] = []
        for item in flow.stream("l-1", checkpointer=store, poll=0.02):
            seen.append(item)
            tokens = [i for i in seen if isinstance(i, LiveItem)]
            if len(tokens) == 2:
                server.release_stream()  # held until this reader had the first pieces
        runner.join(30)
    tokens = [i for i in seen if isinstance(i, LiveItem)]
    assert "".join(t.payload["text"] for t in tokens) == ANSWER
    assert {(t.kind, t.node, t.payload["agent"], t.payload["turn"]) for t in tokens} == {
        ("model.token", "support", "support", 1)}
    kinds = [str(i.kind) for i in seen if isinstance(i, PAEvent)]
    assert kinds[-1] == "run.finished" and "model.response" in kinds
    # The pieces came before the response that holds them was committed.
    first_token = next(n for n, i in enumerate(seen) if isinstance(i, LiveItem))
    response = next(n for n, i in enumerate(seen)
                    if isinstance(i, PAEvent) and str(i.kind) == "model.response")
    assert first_token < response
    state = store.load_latest("l-1")
    assert state is not None and state.data["support"] == ANSWER


def test_flow_astream_follows_an_arun_in_the_same_event_loop(
        store: BaseCheckpointer, tmp_path: Path, monkeypatch: Any) -> None:
    """One loop runs the flow and follows it. The server holds the answer after its
    first pieces until the follower has them: a follower that blocked the loop (or read
    only committed events) would stall the run it waits for, and the run fail."""
    monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "live"))
    with OpenAICompatibleTestServer([{"content": ANSWER, "hold_after": 3}],
                                    together_timeout=60.0) as server:
        flow = _flow(server)

        async def run_and_follow() -> tuple[Any, list[PAEvent | LiveItem]]:
            running = asyncio.create_task(
                flow.arun({"input": "Where is A1?"}, checkpointer=store, run_id="l-a"))
            seen: list[PAEvent | LiveItem] = []
            async for item in flow.astream("l-a", checkpointer=store, poll=0.02):
                seen.append(item)
                if len([i for i in seen if isinstance(i, LiveItem)]) == 2:
                    server.release_stream()
            return await running, seen

        # In a thread of its own, so that a loop the follower blocked fails the test.
        result: list[tuple[Any, list[PAEvent | LiveItem]]] = []
        loop = threading.Thread(target=lambda: result.append(asyncio.run(run_and_follow())),
                                daemon=True)
        loop.start()
        loop.join(120)
        assert result, "the run and its follower did not finish: the loop was blocked"
        state, seen = result[0]
        assert server.requests[0]["stream"] is True
    assert state.status.value == "completed", state.error
    tokens = [i for i in seen if isinstance(i, LiveItem)]
    assert "".join(t.payload["text"] for t in tokens) == ANSWER and len(tokens) > 2
    events = [i for i in seen if isinstance(i, PAEvent)]
    assert [e.seq for e in events] == [e.seq for e in store.list_events("l-a")]
    assert str(events[-1].kind) == "run.finished"
    first_token = next(n for n, i in enumerate(seen) if isinstance(i, LiveItem))
    response = next(n for n, i in enumerate(seen)
                    if isinstance(i, PAEvent) and str(i.kind) == "model.response")
    assert first_token < response


def test_events_follow_prints_tokens_while_the_model_streams(tmp_path: Path,
                                                              monkeypatch: Any) -> None:
    assert SCRIPT, "the purpose-agent script is not installed"
    db = tmp_path / "runs.db"
    monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "live"))  # this process and the CLI's
    env = dict(os.environ)
    with OpenAICompatibleTestServer([{"content": ANSWER, "hold_after": 3}],
                                    together_timeout=30.0) as server, \
            open_checkpointer(str(db)) as store:
        runner = _run_in_thread(_flow(server), store, "l-2")
        assert server.holding.wait(30)
        follower = subprocess.Popen(
            [SCRIPT, "events", "l-2", "--follow", "--json", "--db", str(db)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert follower.stdout is not None
        lines: list[dict[str, Any]] = []
        while len([x for x in lines if x.get("live")]) < 2:  # the pieces before the hold
            line = follower.stdout.readline()
            assert line, follower.stderr.read() if follower.stderr else ""
            lines.append(json.loads(line))
        server.release_stream()
        out, err = follower.communicate(timeout=60)
        runner.join(30)
    lines += [json.loads(line) for line in out.splitlines()]
    assert follower.returncode == 0, err
    live = [x for x in lines if x.get("live")]
    assert "".join(x["text"] for x in live) == ANSWER
    assert {x["kind"] for x in live} == {"model.token"}
    assert lines[-1]["kind"] == "run.finished"


def test_on_postgresql_a_follower_on_another_host_sees_the_tokens(
        pg_url: str, tmp_path: Path, server: OpenAICompatibleTestServer,
        monkeypatch: Any) -> None:
    """The run streams in one process, the follower (``events --follow``) runs in
    another with a live directory of its own, as on another machine: the pieces reach
    it through the database (NOTIFY), from the moment it listens."""
    from purpose_agent.runtime.checkpoint._postgres_live import live_channel

    assert SCRIPT, "the purpose-agent script is not installed"
    server.add({"content": ANSWER, "hold_after": 3})
    monkeypatch.setenv(LIVE_DIR_ENV, str(tmp_path / "host-a"))
    child = Child(pg_url, tmp_path / "effects.log", server)
    running = child.start("run", "l-pg", {"input": "Where is A1?"}, flow="support_stream")
    try:
        assert server.holding.wait(60), "the child never started streaming"
        env = {**os.environ, LIVE_DIR_ENV: str(tmp_path / "host-b")}
        follower = subprocess.Popen(
            [SCRIPT, "events", "l-pg", "--follow", "--json", "--db", pg_url],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store = child.store()
        listen = f'LISTEN "{live_channel(store.schema, "l-pg")}"'  # type: ignore[attr-defined]
        wait_for(lambda: store._rows(  # type: ignore[attr-defined]
            "SELECT 1 FROM pg_stat_activity WHERE query = %s", (listen,)),
            what="the follower to LISTEN")
        server.release_stream()
        out, err = follower.communicate(timeout=60)
        state = json.loads(running.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        running.kill()
        child.close()
    assert follower.returncode == 0, err
    assert state["status"] == "completed"
    lines = [json.loads(line) for line in out.splitlines()]
    live = [n for n, x in enumerate(lines) if x.get("live")]
    # The pieces sent after it listened ("Your ord" came before), before the response.
    assert "".join(lines[n]["text"] for n in live) == ANSWER[len("Your ord"):]
    response = next(n for n, x in enumerate(lines) if x.get("kind") == "model.response")
    assert live[0] < response
    assert lines[-1]["kind"] == "run.finished"
    assert not (tmp_path / "host-b").exists()  # nothing came through a file
