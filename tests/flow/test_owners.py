"""Rule 3 inside one process: every driver (a thread's or a task's run, resume or cancel)
is its own lease owner."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from purpose_agent import END, Flow
from purpose_agent.errors import RunBusyError
from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.state import RunStatus

STORES = {"memory": lambda tmp: "memory://", "sqlite": lambda tmp: f"sqlite:///{tmp}/runs.db",
          "jsonl": lambda tmp: f"jsonl:///{tmp}/runs"}
WAIT = 30  # seconds: only a hang waits this long


@pytest.fixture(params=list(STORES))
def cp(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = open_checkpointer(STORES[request.param](tmp_path))
    yield store
    store.close()


def _seen(cp: Any, run_id: str = "r1") -> tuple:
    info = cp.run_info(run_id).to_dict()
    return ([e.to_dict() for e in cp.list_events(run_id)], cp.load_latest(run_id).to_dict(),
            info["owner"], info["lease_expires_at"])


def _blocking_flow(effects: list[str], entered: threading.Event,
                   release: threading.Event) -> Flow:
    """Node ``work`` makes a step, waits for ``release``, makes another; then ``after``."""
    flow = Flow("owners", purpose="a run that another driver tries to take")

    @flow.node
    def work(ctx):
        ctx.step("first", effects.append, "first")
        entered.set()
        assert release.wait(WAIT)
        ctx.step("second", effects.append, "second")
        return {"worked": True}

    @flow.node
    def after(ctx):
        effects.append("after")
        return {}

    flow.edge("work", "after").edge("after", END)
    return flow


class _Driven:
    """A run advanced by ``flow.run`` in a thread of this process."""

    def __init__(self, flow: Flow, cp: Any, entered: threading.Event) -> None:
        self.state: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(flow, cp))
        self.thread.start()
        assert entered.wait(WAIT)

    def _run(self, flow: Flow, cp: Any) -> None:
        try:
            self.state = flow.run({}, checkpointer=cp, run_id="r1")
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def join(self) -> Any:
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.state


def test_a_resume_from_another_thread_is_busy_and_writes_nothing(cp):
    effects: list[str] = []
    entered, release = threading.Event(), threading.Event()
    flow = _blocking_flow(effects, entered, release)
    live = _Driven(flow, cp, entered)
    seen = _seen(cp)
    with pytest.raises(RunBusyError, match="another driver in this process"):
        flow.resume("r1", checkpointer=cp)
    with pytest.raises(RunBusyError):
        flow.resume("r1", checkpointer=cp, update={"x": 1})
    assert _seen(cp) == seen  # no event, no state, the same owner and expiry
    release.set()
    state = live.join()  # the live driver kept its lease: every later commit was accepted
    assert state.status is RunStatus.COMPLETED
    assert effects == ["first", "second", "after"]


def test_a_resume_from_another_task_is_busy_and_writes_nothing(cp):
    effects: list[str] = []
    flow = Flow("owners-async", purpose="two tasks of one event loop")

    async def main() -> Any:
        entered, release = asyncio.Event(), asyncio.Event()

        @flow.node
        async def work(ctx):
            ctx.step("first", effects.append, "first")
            entered.set()
            await release.wait()
            ctx.step("second", effects.append, "second")
            return {}

        flow.edge("work", END)
        task = asyncio.create_task(flow.arun({}, checkpointer=cp, run_id="r1"))
        await asyncio.wait_for(entered.wait(), WAIT)
        seen = _seen(cp)
        with pytest.raises(RunBusyError):
            await flow.aresume("r1", checkpointer=cp)
        assert _seen(cp) == seen
        release.set()
        return await asyncio.wait_for(task, WAIT)

    state = asyncio.run(main())
    assert state.status is RunStatus.COMPLETED
    assert effects == ["first", "second"]


def test_a_cancel_from_another_thread_stops_the_live_run_at_the_next_node(cp):
    effects: list[str] = []
    entered, release = threading.Event(), threading.Event()
    flow = _blocking_flow(effects, entered, release)
    live = _Driven(flow, cp, entered)
    returned = flow.cancel("r1", checkpointer=cp)
    assert returned.status is RunStatus.RUNNING  # asked, not yet done
    assert cp.run_info("r1").cancel_requested
    release.set()
    state = live.join()  # not LeaseError: the live driver honours the request
    assert state.status is RunStatus.CANCELLED
    assert effects == ["first", "second"]  # the node under way finished; "after" never ran
    assert cp.load_latest("r1").status is RunStatus.CANCELLED
    assert cp.run_info("r1").owner is None


def test_a_cancel_from_another_process_stops_the_live_run(tmp_path):
    url = STORES["sqlite"](tmp_path)
    cp = open_checkpointer(url)
    effects: list[str] = []
    entered, release = threading.Event(), threading.Event()
    flow = _blocking_flow(effects, entered, release)
    live = _Driven(flow, cp, entered)
    subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        from purpose_agent.flow.operations import cancel_run
        from purpose_agent.runtime.checkpoint import open_checkpointer
        print(cancel_run(open_checkpointer(sys.argv[1]), "r1").status)
    """), url], check=True, timeout=WAIT)
    release.set()
    assert live.join().status is RunStatus.CANCELLED
    assert effects == ["first", "second"]


def test_a_driver_that_ended_without_releasing_is_taken_over_at_once(cp):
    flow = Flow("crashing", purpose="a driver that stops mid-run")
    calls: list[int] = []

    @flow.node
    def work(ctx):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # not an error the engine handles: the driver ends
        return {}

    flow.edge("work", END)
    with pytest.raises(KeyboardInterrupt):
        flow.run({}, checkpointer=cp, run_id="r1")
    info = cp.run_info("r1")
    assert info.status is RunStatus.RUNNING  # left where its last commit put it
    # A driver of this process that ended while holding the lease (say its release
    # failed): its lease does not have to expire before another driver takes the run.
    with driver() as ended:
        cp.acquire_lease("r1", ended, 600)
    assert cp.run_info("r1").owner == ended
    assert flow.resume("r1", checkpointer=cp).status is RunStatus.COMPLETED  # no expiry wait
    assert len(calls) == 2
