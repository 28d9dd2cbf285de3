"""Run listings at scale, on every store: filters by status, flow and run-id search, and
paging by key (``after``) that neither repeats nor skips a run across pages.

The expected listing is computed here from what the test wrote, never read back from
the store. The commit clock is the test's (``_base.time``), so thousands of runs share
an ``updated_at`` and the order of ties (run id, descending) is exercised too.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from purpose_agent.runtime.checkpoint import SQLiteCheckpointer, _base
from purpose_agent.runtime.journal import RunInfo
from purpose_agent.runtime.state import RunState, RunStatus

STATUSES = [RunStatus.COMPLETED, RunStatus.PAUSED, RunStatus.FAILED, RunStatus.RUNNING]
FLOWS = ["triage", "refund", "ship"]


class Written:
    """The runs the test wrote: run id -> (updated_at, status, flow)."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[float, RunStatus, str]] = {}

    def expected(self, *, status=None, flow=None, search=None) -> list[str]:
        rows = [(ts, run_id) for run_id, (ts, st, fl) in self.runs.items()
                if (status is None or st == status) and (flow is None or fl == flow)
                and (search is None or search in run_id)]
        return [run_id for _ts, run_id in sorted(rows, reverse=True)]


def fill(store, monkeypatch, count: int) -> Written:
    """``count`` runs: every 7 share a commit time; a running run commits twice (its
    second commit is its listing time), so SQLite's running runs, whose runs row keeps
    the first, are listed by the second. Written by 4 threads (each commit's time is its
    thread's), and through a second store on the same file or schema that does not wait
    for the disk (SQLite without fsync, PostgreSQL with ``synchronous_commit=off``): the
    listing is what is tested, not durability."""
    clock = threading.local()
    monkeypatch.setattr(_base, "time", SimpleNamespace(time=lambda: clock.now))
    writer = _unsynced_writer(store)
    written = Written()

    def write(i: int) -> None:
        run_id = f"run-{(i * 7919) % count:05d}"  # ids not in commit order
        status, flow = STATUSES[i % len(STATUSES)], FLOWS[(i // 3) % len(FLOWS)]
        clock.now = 1_000_000.0 + i // 7
        state = RunState(run_id=run_id, status=status, flow=flow, purpose="listing")
        writer.save_snapshot(run_id, state)
        if status == RunStatus.RUNNING:
            clock.now += 0.5
            writer.save_snapshot(run_id, state)
        written.runs[run_id] = (clock.now, status, flow)

    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(write, range(count)))
    finally:
        if writer is not store:
            writer.close()
        monkeypatch.undo()
    return written


def _unsynced_writer(store):
    """The same store opened again without waiting for the disk at each commit, or
    ``store`` itself (memory, JSONL)."""
    if isinstance(store, SQLiteCheckpointer):
        return SQLiteCheckpointer(store.path, synchronous="OFF")
    if type(store).__name__ == "PostgresCheckpointer":  # psycopg is an optional extra
        from psycopg.conninfo import make_conninfo

        from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

        return PostgresCheckpointer(
            make_conninfo(store._conninfo, options="-c synchronous_commit=off"),
            schema=store.schema)
    return store


def walk(store, size: int, **filters) -> list[str]:
    """Every run a listing reaches, page by page through ``after``; every page but the
    last is full."""
    seen: list[str] = []
    after: RunInfo | None = None
    short = False
    for _page in itertools.count():
        page = store.list_run_infos(after=after, limit=size, **filters)
        assert len(page) <= size
        if not page:
            return seen
        assert not short, f"{filters}: a page of {len(page)} after a short page"
        short = len(page) < size
        seen += [info.run_id for info in page]
        after = page[-1]
    raise AssertionError("unreachable")


CASES = [{}, {"status": RunStatus.PAUSED}, {"status": RunStatus.RUNNING},
         {"flow": "refund"}, {"search": "7"}, {"status": "failed", "flow": "ship"},
         {"flow": "triage", "search": "12"}, {"search": "no-such-run"}]


def check_listings(store, written: Written, size: int, cases=CASES) -> None:
    for filters in cases:
        want = written.expected(**filters)
        got = walk(store, size, **filters)
        assert len(got) == len(set(got)), f"{filters}: a run listed twice"
        assert got == want, f"{filters}: pages differ from the expected listing"
        # the first page without a cursor is the head of the listing
        head = [i.run_id for i in store.list_run_infos(limit=size, **filters)]
        assert head == want[:size]


def test_paging_filters_on_a_small_store(store, monkeypatch):
    written = fill(store, monkeypatch, 60)
    check_listings(store, written, size=7)
    assert [i.run_id for i in store.list_run_infos()] == written.expected()


@pytest.mark.parametrize("count", [10_000])
def test_ten_thousand_runs_page_without_repeats_or_gaps(store, monkeypatch, count, request):
    # JSONL keeps no index across runs: each page reads every run's header, so it walks
    # a thousand runs (the same cases); the other stores walk ten thousand.
    if "jsonl" in request.node.callspec.id:
        count = 1_000
    written = fill(store, monkeypatch, count)
    check_listings(store, written, size=500, cases=[
        {}, {"status": RunStatus.RUNNING}, {"flow": "refund", "search": "3"}])
    assert store.list_runs() == written.expected()


def test_cursor_accepts_a_key_and_refuses_garbage(store, monkeypatch):
    written = fill(store, monkeypatch, 20)
    order = written.expected()
    info = store.run_info(order[4])
    by_key = store.list_run_infos(after=(info.updated_at, info.run_id), limit=3)
    assert [i.run_id for i in by_key] == order[5:8]
    for bad in ["run-1", (1.0,), ("x", "run-1"), (float("nan"), "r"), (True, "r"), 3,
                (1.0, "r\ud800"), (1.0, "r\x00")]:
        with pytest.raises(ValueError, match="after must be"):
            store.list_run_infos(after=bad)
    for bad in ["", "a\x00b", 3]:
        with pytest.raises(ValueError, match="flow must be"):
            store.list_run_infos(flow=bad)
        with pytest.raises(ValueError, match="search must be"):
            store.list_run_infos(search=bad)


def test_search_and_flow_are_values_not_sql(store, monkeypatch):
    written = fill(store, monkeypatch, 12)
    for hostile in ["%", "_", "' OR 1=1 --", '"', "\\", "run-0000%", "\ud800", "é"]:
        assert store.list_run_infos(search=hostile) == []
        assert store.list_run_infos(flow=hostile) == []
    assert len(store.list_run_infos()) == len(written.runs)
