"""``ctx.map``: durable steps in parallel, at most ``max_concurrency`` at a time, results
in input order, each journaled on its own (a re-executed node re-runs only the items
whose result was not committed); sync (threads) and async, on every store."""

from __future__ import annotations

import asyncio
import threading

import pytest

from purpose_agent import (
    END,
    Flow,
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
    step,
)
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus


@pytest.fixture(params=["memory", "sqlite", "jsonl"])
def cp(request, tmp_path):
    store = {"memory": InMemoryCheckpointer,
             "sqlite": lambda: SQLiteCheckpointer(tmp_path / "runs.db"),
             "jsonl": lambda: JSONLCheckpointer(tmp_path / "runs")}[request.param]()
    yield store
    store.close()


class Gauge:
    """How many calls run at once, at most."""

    def __init__(self) -> None:
        self.lock, self.now, self.peak, self.calls = threading.Lock(), 0, 0, []
        self.barrier = threading.Barrier(2, timeout=10)

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_items_run_in_parallel_within_the_limit_and_come_back_in_order(cp) -> None:
    gauge = Gauge()
    flow = Flow("fan")

    def square(n: int) -> int:
        with gauge:
            if n < 2:
                gauge.barrier.wait()  # the first two are in flight together
            gauge.calls.append(n)
            return n * n

    @flow.node
    def spread(ctx):
        return {"squares": ctx.map(square, range(8), max_concurrency=2)}

    flow.edge("spread", END)
    state = flow.run({}, checkpointer=cp, run_id="m")
    assert state.data["squares"] == [n * n for n in range(8)]
    assert gauge.peak == 2
    steps = cp.load_steps("m", 1)
    assert [(r.index, r.result) for r in steps] == [(n, n * n) for n in range(8)]


def test_a_retried_node_reruns_only_the_items_that_failed(cp) -> None:
    calls: list[int] = []
    flow = Flow("fan-retry")

    def fetch(n: int) -> int:
        calls.append(n)
        if n == 3 and calls.count(3) == 1:
            raise ConnectionError("flaky")
        return n

    @flow.node(retries=1, backoff=0.0)
    def spread(ctx):
        return {"got": ctx.map(fetch, range(5), max_concurrency=3)}

    flow.edge("spread", END)
    state = flow.run({}, checkpointer=cp, run_id="r")
    assert state.data["got"] == [0, 1, 2, 3, 4]
    assert sorted(calls) == [0, 1, 2, 3, 3, 4]  # only item 3 ran twice
    assert len(cp.list_events("r", kinds=EventKind.STEP_COMPLETED)) == 5


def test_an_async_map_awaits_its_items(cp) -> None:
    flow = Flow("afan")
    running = {"now": 0, "peak": 0}

    async def double(n: int) -> int:
        running["now"] += 1
        running["peak"] = max(running["peak"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return 2 * n

    @flow.node
    async def spread(ctx):
        return {"doubled": await ctx.map(double, range(6), max_concurrency=3)}

    flow.edge("spread", END)
    state = asyncio.run(flow.arun({}, checkpointer=cp, run_id="a"))
    assert state.status is RunStatus.COMPLETED
    assert state.data["doubled"] == [0, 2, 4, 6, 8, 10] and running["peak"] == 3


def test_a_bad_max_concurrency_fails_the_node_with_a_clear_error(cp) -> None:
    flow = Flow("bad")

    @flow.node
    def spread(ctx):
        return {"r": ctx.map(str, [1], max_concurrency=0)}

    flow.edge("spread", END)
    state = flow.run({}, checkpointer=cp, run_id="b")
    assert state.status is RunStatus.FAILED
    assert "max_concurrency must be a whole number >= 1" in state.error["message"]


def test_an_at_most_once_item_is_journaled_as_started_only_when_it_runs(cp) -> None:
    """Items queued behind ``max_concurrency`` have not started: a crash while the first
    runs must leave only the first in doubt, so the second's start is not journaled yet."""
    seen: dict[int, list[tuple[int, str]]] = {}
    flow = Flow("fan-once")

    @step(at_most_once=True)
    def send(n: int) -> str:
        seen[n] = [(r.index, r.status) for r in cp.load_steps("o", 1)]
        return f"sent {n}"

    @flow.node
    def spread(ctx):
        return {"sent": ctx.map(send, [0, 1, 2], max_concurrency=1)}

    flow.edge("spread", END)
    state = flow.run({}, checkpointer=cp, run_id="o")
    assert state.data["sent"] == ["sent 0", "sent 1", "sent 2"]
    for n in range(3):  # the items before it may not be committed yet: they ran
        assert [index for index, _status in seen[n]] == list(range(n + 1)), seen
        assert seen[n][-1] == (n, "started")


def test_each_item_has_its_own_idempotency_key_and_a_step_inside_is_a_plain_call(cp) -> None:
    keys: list[str] = []
    flow = Flow("fan-keys")

    @step
    def helper(n: int) -> int:
        return n + 1

    @flow.node(retries=1, backoff=0.0)
    def spread(ctx):
        def charge(n: int) -> str:
            keys.append(ctx.idempotency_key())
            if n == 1 and len(keys) <= 2:
                raise ConnectionError("flaky")
            return f"{n}->{helper(n)}"

        return {"got": ctx.map(charge, [0, 1], max_concurrency=2, name="charge")}

    flow.edge("spread", END)
    state = flow.run({}, checkpointer=cp, run_id="k")
    assert state.data["got"] == ["0->1", "1->2"]
    assert sorted(keys) == sorted(["k:1/spread/charge/#0", "k:1/spread/charge/#1",
                                   "k:1/spread/charge/#1"])
    # helper ran inside each item: no step of its own, in any attempt.
    assert [r.name for r in cp.load_steps("k", 1) if r.kind == "step"] == ["charge"] * 2
