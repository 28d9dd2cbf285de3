"""The inspector's inbox lists runs that ask a person, not runs parked on a timer or a
message (nothing there for a person to answer); their row says what they wait for."""

from __future__ import annotations

from pathlib import Path

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.ui.views import inbox, row_of


def test_a_sleeping_run_is_not_in_the_inbox(tmp_path: Path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    sleeper, asker = Flow("sleeper", inline_wait=0.0), Flow("asker")

    @sleeper.node
    def nap(ctx):
        ctx.sleep(3600)
        return {}

    @asker.node
    def ask(ctx):
        return {"ok": ctx.interrupt({"question": "ok?"})}

    sleeper.edge("nap", END)
    asker.edge("ask", END)
    sleeper.run({}, checkpointer=cp, run_id="s")
    asker.run({}, checkpointer=cp, run_id="a")
    assert [item.run_id for item in inbox(cp)] == ["a"]
    assert row_of(cp.run_info("s"))["waiting"].startswith("sleeping until ")
    cp.close()
