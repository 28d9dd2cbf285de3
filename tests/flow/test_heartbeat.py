"""Leases stay live while nodes run longer than the lease: one keeper thread renews them."""

from __future__ import annotations

import threading
import time

from purpose_agent import END, Flow, SQLiteCheckpointer


def test_runs_in_several_threads_keep_their_leases_through_long_nodes(tmp_path):
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = Flow("slow", purpose="nodes longer than the lease", lease_ttl=0.3)
    seen: dict[str, tuple[float, float, float, str | None]] = {}

    @flow.node
    def wait(ctx):
        first = cp.run_info(ctx.run_id).lease_expires_at
        time.sleep(0.6)  # twice the lease: only renewals keep it
        info = cp.run_info(ctx.run_id)
        seen[ctx.run_id] = (first, info.lease_expires_at, time.time(), info.owner)
        return {}

    flow.edge("wait", END)
    threads = [threading.Thread(target=flow.run, args=({},),
                                kwargs={"checkpointer": cp, "run_id": f"r{i}"})
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(seen) == ["r0", "r1", "r2"]
    for first, later, checked_at, owner in seen.values():
        assert owner is not None
        assert later > first and later > checked_at  # renewed, and still valid
    time.sleep(0.2)
    for run_id in seen:
        info = cp.run_info(run_id)
        assert str(info.status) == "completed" and info.owner is None  # released, not renewed
