"""How long the inspector's pages take on a large store, over real HTTP.

    python bench/ui.py            # 10,000 runs and a 10,000-event run
    python bench/ui.py --runs 2000 --events 2000

Builds a SQLite store with N one-node runs and one run with M progress events, serves it
with uvicorn on 127.0.0.1, and times each page (median of 5 requests).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import uvicorn

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.cli.render import cursor_text
from purpose_agent.ui import Settings, create_app
from purpose_agent.ui.server import bind


def build(path: Path, runs: int, events: int) -> None:
    quick = Flow("bench-quick")
    quick.add(lambda ctx: {"n": 1}, name="only")
    quick.edge("only", END)
    # A long run as agents make them: many node executions, a few events each.
    chatty = Flow("bench-chatty", max_steps=events)

    def tick(ctx):  # type: ignore[no-untyped-def]
        ctx.emit("thinking")
        ctx.step("look", lambda: "found")
        return {"n": ctx.data.get("n", 0) + 1}
    chatty.add(tick, name="tick")
    # each execution commits 5 events (started, progress, call, result, finished)
    chatty.route("tick", lambda data: "tick" if data["n"] < events // 5 else END)
    with SQLiteCheckpointer(str(path), synchronous="NORMAL") as cp:
        for i in range(runs):
            quick.run({}, checkpointer=cp, run_id=f"run-{i:05d}")
        chatty.run({}, checkpointer=cp, run_id="long")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        started = time.perf_counter()
        build(db, args.runs, args.events)
        print(f"built {args.runs} runs and a {args.events}-event run in "
              f"{time.perf_counter() - started:.1f}s")
        sock = bind("127.0.0.1", 0)
        settings = Settings(url=f"sqlite:///{db}", port=sock.getsockname()[1])
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        with SQLiteCheckpointer(str(db), read_only=True) as cp:
            near, far = (cp.run_info(f"run-{i:05d}") for i in (args.runs - 51, 50))
        assert near is not None and far is not None
        pages = ["/runs", f"/runs?{urlencode({'after': cursor_text(near)})}",
                 f"/runs?{urlencode({'after': cursor_text(far)})}",
                 "/runs?flow=bench-chatty", "/runs?q=run-0999", "/inbox",
                 "/runs/long", "/runs/long?tab=transcript", "/runs/long?tab=state",
                 "/runs/long?tab=events", f"/runs/long?tab=events&since={args.events - 50}"]
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}", timeout=60) as client:
            for page in pages:
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    response = client.get(page)
                    times.append(time.perf_counter() - t0)
                    assert response.status_code == 200, (page, response.status_code)
                print(f"{page:<45} {statistics.median(times) * 1000:8.1f} ms  "
                      f"({len(response.content) // 1024} KB)")
        server.should_exit = True
        thread.join()


if __name__ == "__main__":
    main()
